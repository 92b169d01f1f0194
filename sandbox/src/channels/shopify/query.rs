//! The simulated Shopify's reading of a GraphQL document: a tree of fields with their
//! arguments (variables substituted), and the requested cost Shopify would charge for it.
//!
//! Written apart from the client's own calculator on purpose: the two may disagree, and a
//! test that sends the client's queries here then fails. The cost follows Shopify's published
//! rules: scalars and enums 0, objects 1, a connection 2 + `first` × one node, a list fetched
//! by ids one object per id, a mutation 10 (plus its payload, the harder reading). A
//! connection asked for without `first`/`last` is refused, as Shopify refuses it.

use serde_json::{Map, Value};

/// Shopify's single-query maximum.
pub const MAX_COST: u64 = 1000;
/// The most items one page may ask for.
pub const MAX_PAGE: u64 = 250;

/// Connections of the Admin schema parts the sandbox serves: `first` or `last` is required.
const CONNECTIONS: [&str; 7] = [
    "productVariants",
    "products",
    "fulfillmentOrders",
    "lineItems",
    "fulfillmentLineItems",
    "webhookSubscriptions",
    "orders",
];
/// Plain lists that take an optional `first` (`Order.fulfillments`, `Fulfillment.trackingInfo`):
/// sized by it when given, one object when not.
const LISTS_WITH_FIRST: [&str; 2] = ["fulfillments", "trackingInfo"];

fn paged(field: &Field) -> bool {
    CONNECTIONS.contains(&field.name.as_str())
        || (LISTS_WITH_FIRST.contains(&field.name.as_str())
            && (field.args.contains_key("first") || field.args.contains_key("last")))
}
/// Lists sized by a list argument: field → argument.
const SIZED_BY: [(&str, &str); 2] = [("nodes", "ids"), ("quantities", "names")];

/// A directive and its arguments, e.g. `@idempotent(key: …)`.
pub type Directive = (String, Map<String, Value>);
/// An inline fragment: its type condition and fields.
pub type Fragment = (String, Vec<Field>);

#[derive(Debug, Clone, Default)]
pub struct Field {
    pub name: String,
    pub args: Map<String, Value>,
    pub fields: Vec<Field>,
    /// Inline fragments: (type condition, fields).
    pub fragments: Vec<Fragment>,
    pub directives: Vec<Directive>,
    pub has_selection: bool,
}

impl Field {
    pub fn child(&self, name: &str) -> Option<&Field> {
        self.fields.iter().chain(self.fragments.iter().flat_map(|(_, f)| f.iter())).find(|f| f.name == name)
    }

    pub fn arg_u64(&self, name: &str) -> Option<u64> {
        self.args.get(name).and_then(Value::as_u64)
    }

    pub fn arg_str(&self, name: &str) -> Option<&str> {
        self.args.get(name).and_then(Value::as_str)
    }

    pub fn directive_arg(&self, directive: &str, name: &str) -> Option<&Value> {
        self.directives.iter().find(|(d, _)| d == directive).and_then(|(_, args)| args.get(name))
    }
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub mutation: bool,
    pub root: Vec<Field>,
}

impl Operation {
    pub fn root_field(&self) -> Option<&Field> {
        self.root.first()
    }
}

/// Parses `text`, substituting `variables`.
pub fn parse(text: &str, variables: &Value) -> Result<Operation, String> {
    let mut reader = Reader { chars: text.chars().collect(), at: 0, variables };
    reader.operation()
}

struct Reader<'a> {
    chars: Vec<char>,
    at: usize,
    variables: &'a Value,
}

impl Reader<'_> {
    fn skip_ignored(&mut self) {
        while let Some(&c) = self.chars.get(self.at) {
            if c.is_whitespace() || c == ',' {
                self.at += 1;
            } else if c == '#' {
                while self.chars.get(self.at).is_some_and(|&c| c != '\n') {
                    self.at += 1;
                }
            } else {
                break;
            }
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ignored();
        self.chars.get(self.at).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn must(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) { Ok(()) } else { Err(format!("expected '{c}' at {}", self.at)) }
    }

    fn name(&mut self) -> Result<String, String> {
        self.skip_ignored();
        let start = self.at;
        while self.chars.get(self.at).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
            self.at += 1;
        }
        if start == self.at {
            return Err(format!("expected a name at {start}"));
        }
        Ok(self.chars[start..self.at].iter().collect())
    }

    fn operation(&mut self) -> Result<Operation, String> {
        let mut mutation = false;
        if self.peek() != Some('{') {
            let keyword = self.name()?;
            mutation = match keyword.as_str() {
                "mutation" => true,
                "query" => false,
                other => return Err(format!("unsupported operation {other}")),
            };
            if self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                self.name()?;
            }
            if self.eat('(') {
                // Variable definitions: `$name: Type = default`; only their end matters.
                let mut depth = 1;
                while depth > 0 {
                    match self.chars.get(self.at) {
                        Some('(') => depth += 1,
                        Some(')') => depth -= 1,
                        None => return Err("unclosed variable definitions".into()),
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            self.directives()?;
        }
        let (root, fragments) = self.selection()?;
        if !fragments.is_empty() {
            return Err("fragments at the root are not supported".into());
        }
        if self.peek().is_some() {
            return Err("one operation per document".into());
        }
        Ok(Operation { mutation, root })
    }

    fn directives(&mut self) -> Result<Vec<Directive>, String> {
        let mut found = Vec::new();
        while self.eat('@') {
            let name = self.name()?;
            let args = if self.peek() == Some('(') { self.arguments()? } else { Map::new() };
            found.push((name, args));
        }
        Ok(found)
    }

    fn selection(&mut self) -> Result<(Vec<Field>, Vec<Fragment>), String> {
        self.must('{')?;
        let mut fields = Vec::new();
        let mut fragments = Vec::new();
        loop {
            if self.eat('}') {
                return Ok((fields, fragments));
            }
            if self.peek() == Some('.') {
                for _ in 0..3 {
                    self.must('.')?;
                }
                if self.name()? != "on" {
                    return Err("named fragment spreads are not supported".into());
                }
                let on = self.name()?;
                self.directives()?;
                let (inner, nested) = self.selection()?;
                if !nested.is_empty() {
                    return Err("nested fragments are not supported".into());
                }
                fragments.push((on, inner));
                continue;
            }
            fields.push(self.field()?);
        }
    }

    fn field(&mut self) -> Result<Field, String> {
        let mut name = self.name()?;
        if self.eat(':') {
            name = self.name()?;
        }
        let args = if self.peek() == Some('(') { self.arguments()? } else { Map::new() };
        let directives = self.directives()?;
        let mut field = Field { name, args, directives, ..Field::default() };
        if self.peek() == Some('{') {
            let (fields, fragments) = self.selection()?;
            field.fields = fields;
            field.fragments = fragments;
            field.has_selection = true;
        }
        Ok(field)
    }

    fn arguments(&mut self) -> Result<Map<String, Value>, String> {
        self.must('(')?;
        let mut args = Map::new();
        while !self.eat(')') {
            let key = self.name()?;
            self.must(':')?;
            let value = self.value()?;
            args.insert(key, value);
        }
        Ok(args)
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some('$') => {
                self.at += 1;
                let name = self.name()?;
                Ok(self.variables.get(&name).cloned().unwrap_or(Value::Null))
            }
            Some('"') => {
                self.at += 1;
                let mut text = String::new();
                loop {
                    match self.chars.get(self.at).copied() {
                        None => return Err("unterminated string".into()),
                        Some('"') => {
                            self.at += 1;
                            return Ok(Value::String(text));
                        }
                        Some('\\') => {
                            if let Some(&c) = self.chars.get(self.at + 1) {
                                text.push(c);
                            }
                            self.at += 2;
                        }
                        Some(c) => {
                            text.push(c);
                            self.at += 1;
                        }
                    }
                }
            }
            Some('[') => {
                self.at += 1;
                let mut items = Vec::new();
                while !self.eat(']') {
                    items.push(self.value()?);
                }
                Ok(Value::Array(items))
            }
            Some('{') => {
                self.at += 1;
                let mut object = Map::new();
                while !self.eat('}') {
                    let key = self.name()?;
                    self.must(':')?;
                    object.insert(key, self.value()?);
                }
                Ok(Value::Object(object))
            }
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let start = self.at;
                while self
                    .chars
                    .get(self.at)
                    .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '.' | 'e' | 'E' | '+'))
                {
                    self.at += 1;
                }
                let literal: String = self.chars[start..self.at].iter().collect();
                serde_json::from_str(&literal).map_err(|_| format!("bad number {literal}"))
            }
            Some(_) => {
                let word = self.name()?;
                Ok(match word.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    enum_value => Value::String(enum_value.to_string()),
                })
            }
            None => Err("document ends inside a value".into()),
        }
    }
}

/// The requested cost of the operation, or why Shopify would refuse to run it.
pub fn requested_cost(operation: &Operation) -> Result<u64, String> {
    let mut total = 0;
    for field in &operation.root {
        total += if operation.mutation { 10 + selection_cost(field)? } else { field_cost(field)? };
    }
    Ok(total)
}

/// What is selected inside `field`: its fields, and the dearest of its fragments.
fn selection_cost(field: &Field) -> Result<u64, String> {
    let mut cost = 0;
    for child in &field.fields {
        cost += field_cost(child)?;
    }
    let mut dearest = 0;
    for (_, fragment) in &field.fragments {
        let mut branch = 0;
        for child in fragment {
            branch += field_cost(child)?;
        }
        dearest = dearest.max(branch);
    }
    Ok(cost + dearest)
}

fn field_cost(field: &Field) -> Result<u64, String> {
    if !field.has_selection {
        return Ok(0);
    }
    if paged(field) {
        let size = field.arg_u64("first").or_else(|| field.arg_u64("last")).ok_or_else(|| {
            format!("you must provide one of first or last for the {} connection", field.name)
        })?;
        if size > MAX_PAGE {
            return Err(format!("{}: the page size {size} is over the maximum of {MAX_PAGE}", field.name));
        }
        return Ok(2 + size * node_cost(field)?);
    }
    if let Some((_, argument)) = SIZED_BY.iter().find(|(name, _)| *name == field.name) {
        let count = field.args.get(*argument).and_then(Value::as_array).map_or(1, Vec::len) as u64;
        return Ok(count * (1 + selection_cost(field)?));
    }
    Ok(1 + selection_cost(field)?)
}

/// One item of a paged field: the node under `nodes` or `edges.node`, or the item itself for
/// a plain list.
fn node_cost(field: &Field) -> Result<u64, String> {
    let mut node = None;
    if let Some(nodes) = field.child("nodes") {
        node = Some(1 + selection_cost(nodes)?);
    }
    if let Some(inner) = field.child("edges").and_then(|e| e.child("node")) {
        node = Some(node.unwrap_or(0).max(1 + selection_cost(inner)?));
    }
    match node {
        Some(cost) => Ok(cost),
        None => Ok(1 + selection_cost(field)?),
    }
}

/// What the answer really cost: the requested rules applied to what came back (connections
/// charged for the nodes returned, not the page size asked for). Shopify refunds the
/// difference to the bucket.
pub fn actual_cost(operation: &Operation, data: &Value) -> u64 {
    operation
        .root
        .iter()
        .map(|field| {
            let value = data.get(&field.name).unwrap_or(&Value::Null);
            if operation.mutation { 10 + selection_actual(field, value) } else { field_actual(field, value) }
        })
        .sum()
}

fn selection_actual(field: &Field, value: &Value) -> u64 {
    let plain: u64 =
        field.fields.iter().map(|c| field_actual(c, value.get(&c.name).unwrap_or(&Value::Null))).sum();
    let dearest = field
        .fragments
        .iter()
        .map(|(_, f)| {
            f.iter().map(|c| field_actual(c, value.get(&c.name).unwrap_or(&Value::Null))).sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    plain + dearest
}

fn field_actual(field: &Field, value: &Value) -> u64 {
    if !field.has_selection || value.is_null() {
        return 0;
    }
    if paged(field) {
        let items: Vec<(&Field, &Value)> = match (field.child("nodes"), value) {
            (Some(nodes), _) => value
                .get("nodes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|v| (nodes, v))
                .collect(),
            (None, Value::Array(list)) => list.iter().map(|v| (field, v)).collect(),
            _ => Vec::new(),
        };
        return 2 + items.iter().map(|(f, v)| 1 + selection_actual(f, v)).sum::<u64>();
    }
    if let Value::Array(list) = value {
        return list.iter().map(|v| 1 + selection_actual(field, v)).sum();
    }
    1 + selection_actual(field, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cost(text: &str, variables: Value) -> Result<u64, String> {
        requested_cost(&parse(text, &variables)?)
    }

    #[test]
    fn documented_examples() {
        assert_eq!(cost("{ shop { id name } }", json!({})).unwrap(), 1);
        assert_eq!(
            cost("query($n: Int!) { products(first: $n) { edges { node { id title } } } }", json!({"n": 10}))
                .unwrap(),
            12
        );
        let nested = "{ orders(first: 50) { nodes { id lineItems(first: 250) { nodes { id } } } } }";
        assert_eq!(cost(nested, json!({})).unwrap(), 2 + 50 * (1 + 2 + 250));
        assert_eq!(cost("mutation { a(input: {x: 1}) { userErrors { field } } }", json!({})).unwrap(), 11);
    }

    #[test]
    fn arguments_and_variables_are_read() {
        let op = parse(
            "query Q($id: ID!, $after: String) { order(id: $id) { fulfillmentOrders(first: 5, after: $after) { nodes { id } } } }",
            &json!({"id": "gid://shopify/Order/7", "after": "c:5"}),
        )
        .unwrap();
        let order = op.root_field().unwrap();
        assert_eq!(order.arg_str("id"), Some("gid://shopify/Order/7"));
        let fos = order.child("fulfillmentOrders").unwrap();
        assert_eq!((fos.arg_u64("first"), fos.arg_str("after")), (Some(5), Some("c:5")));
    }

    #[test]
    fn unpaged_and_oversized_connections_are_refused() {
        assert!(cost("{ productVariants { nodes { id } } }", json!({})).is_err());
        assert!(cost("{ productVariants(first: 251) { nodes { id } } }", json!({})).is_err());
    }
}

//! Shopify's requested query cost, worked out before a query leaves, so that no query this
//! client builds can exceed the 1,000-point single-query cap (Shopify refuses such a query
//! outright with `MAX_COST_EXCEEDED`, before running it).
//!
//! The rules, as Shopify's "GraphQL Admin API rate limits" page and its engineering post on
//! calculated query cost describe them:
//! - a scalar or enum field costs 0, an object field 1;
//! - a connection (a field paged with `first`/`last`) costs 2, plus `first` times the cost of
//!   one node: 1 for the node object and whatever is selected inside it. `edges`, `node`,
//!   `nodes`, `pageInfo` and `cursor` belong to the connection and add nothing;
//! - a list sized by its input (`nodes(ids:)`, `quantities(names:)`) costs one object per
//!   element asked for;
//! - a mutation's root field costs 10; we add its payload on top, an upper bound;
//! - an interface or union (inline fragments) costs its most expensive branch.
//!
//! Without the schema, "object" means "has a selection set", which is exactly right for what
//! a query can select. Page sizes given as variables are read from the variables sent.

use serde_json::Value;

/// Shopify's cap on the requested cost of one query.
pub const MAX_QUERY_COST: u64 = 1_000;
/// What one mutation root field costs.
const MUTATION_COST: u64 = 10;

/// The requested cost of `query` with `variables`, or why it cannot be worked out.
pub fn requested_cost(query: &str, variables: &Value) -> Result<u64, String> {
    let tokens = tokenize(query)?;
    let mut parser = Parser { tokens: &tokens, at: 0, variables };
    parser.document()
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Variable(String),
    Int(i64),
    /// Floats, strings, booleans and nulls: values that never size anything.
    Literal,
    Punct(char),
    Spread,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() || c == ',' => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated string".into());
                }
                i += 1;
                tokens.push(Token::Literal);
            }
            '.' => {
                if chars.get(i..i + 3) == Some(&['.', '.', '.']) {
                    tokens.push(Token::Spread);
                    i += 3;
                } else {
                    return Err("stray '.'".into());
                }
            }
            '$' => {
                let (name, next) = read_name(&chars, i + 1);
                if name.is_empty() {
                    return Err("'$' without a variable name".into());
                }
                tokens.push(Token::Variable(name));
                i = next;
            }
            c if c == '-' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '+' | '-'))
                {
                    i += 1;
                }
                let literal: String = chars[start..i].iter().collect();
                tokens.push(literal.parse::<i64>().map(Token::Int).unwrap_or(Token::Literal));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let (name, next) = read_name(&chars, i);
                tokens.push(match name.as_str() {
                    "true" | "false" | "null" => Token::Literal,
                    _ => Token::Name(name),
                });
                i = next;
            }
            '{' | '}' | '(' | ')' | '[' | ']' | ':' | '@' | '!' | '=' => {
                tokens.push(Token::Punct(c));
                i += 1;
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(tokens)
}

fn read_name(chars: &[char], mut i: usize) -> (String, usize) {
    let start = i;
    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
        i += 1;
    }
    (chars[start..i].iter().collect(), i)
}

/// An argument's value, as far as cost cares: a number, a list of some length, or neither.
enum Argument {
    Int(i64),
    List(usize),
    Other,
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    variables: &'a Value,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Result<Token, String> {
        let token = self.tokens.get(self.at).cloned().ok_or("query ends early")?;
        self.at += 1;
        Ok(token)
    }

    fn expect(&mut self, punct: char) -> Result<(), String> {
        match self.next()? {
            Token::Punct(c) if c == punct => Ok(()),
            other => Err(format!("expected {punct:?}, found {other:?}")),
        }
    }

    fn at_punct(&self, punct: char) -> bool {
        self.peek() == Some(&Token::Punct(punct))
    }

    /// One operation (we send no fragments definitions and no multi-operation documents).
    fn document(&mut self) -> Result<u64, String> {
        let mutation = match self.peek() {
            Some(Token::Name(keyword)) if keyword == "mutation" => true,
            Some(Token::Name(keyword)) if keyword == "query" => false,
            Some(Token::Punct('{')) => false,
            other => return Err(format!("expected an operation, found {other:?}")),
        };
        if !self.at_punct('{') {
            self.next()?;
            if matches!(self.peek(), Some(Token::Name(_))) {
                self.next()?;
            }
            if self.at_punct('(') {
                self.skip_balanced('(', ')')?;
            }
            self.directives()?;
        }
        let cost = if mutation { self.mutation_root()? } else { self.selection_set()? };
        if self.at < self.tokens.len() {
            return Err("more than one operation in the document".into());
        }
        Ok(cost)
    }

    fn mutation_root(&mut self) -> Result<u64, String> {
        self.expect('{')?;
        let mut cost = 0;
        while !self.at_punct('}') {
            let field = self.field()?;
            cost += MUTATION_COST + field.inner;
        }
        self.expect('}')?;
        Ok(cost)
    }

    fn skip_balanced(&mut self, open: char, close: char) -> Result<(), String> {
        self.expect(open)?;
        let mut depth = 1;
        while depth > 0 {
            match self.next()? {
                Token::Punct(c) if c == open => depth += 1,
                Token::Punct(c) if c == close => depth -= 1,
                _ => {}
            }
        }
        Ok(())
    }

    fn directives(&mut self) -> Result<(), String> {
        while self.at_punct('@') {
            self.next()?;
            self.next()?;
            if self.at_punct('(') {
                self.skip_balanced('(', ')')?;
            }
        }
        Ok(())
    }

    /// The cost of a `{ ... }`: its fields, plus the dearest of its inline fragments.
    fn selection_set(&mut self) -> Result<u64, String> {
        Ok(self.selections()?.iter().map(|f| f.cost()).sum::<u64>())
    }

    /// The fields of a `{ ... }`, inline fragments folded into one pseudo-field (their maximum).
    fn selections(&mut self) -> Result<Vec<Field>, String> {
        self.expect('{')?;
        let mut fields = Vec::new();
        let mut dearest_fragment = 0;
        while !self.at_punct('}') {
            if self.peek() == Some(&Token::Spread) {
                self.next()?;
                match self.next()? {
                    Token::Name(on) if on == "on" => {
                        self.next()?;
                        self.directives()?;
                        dearest_fragment = dearest_fragment.max(self.selection_set()?);
                    }
                    other => return Err(format!("named fragment spreads are not supported ({other:?})")),
                }
                continue;
            }
            fields.push(self.field()?);
        }
        self.expect('}')?;
        if dearest_fragment > 0 {
            fields
                .push(Field { name: "…".into(), shape: Shape::Fixed(dearest_fragment), inner: 0, node: 0 });
        }
        Ok(fields)
    }

    fn field(&mut self) -> Result<Field, String> {
        let mut name = match self.next()? {
            Token::Name(n) => n,
            other => return Err(format!("expected a field, found {other:?}")),
        };
        if self.at_punct(':') {
            self.next()?;
            name = match self.next()? {
                Token::Name(n) => n,
                other => return Err(format!("expected a field after the alias, found {other:?}")),
            };
        }
        let mut page = None;
        let mut sized = None;
        if self.at_punct('(') {
            self.next()?;
            while !self.at_punct(')') {
                let argument = match self.next()? {
                    Token::Name(n) => n,
                    other => return Err(format!("expected an argument name, found {other:?}")),
                };
                self.expect(':')?;
                let value = self.value()?;
                match (argument.as_str(), value) {
                    ("first" | "last", Argument::Int(n)) => page = Some(u64::try_from(n).unwrap_or(0)),
                    ("first" | "last", _) => return Err(format!("{name}({argument}:) has no known size")),
                    ("ids" | "names", Argument::List(n)) => sized = Some(n as u64),
                    _ => {}
                }
            }
            self.expect(')')?;
        }
        self.directives()?;
        if !self.at_punct('{') {
            return Ok(Field { name, shape: Shape::Scalar, inner: 0, node: 0 });
        }
        let children = self.selections()?;
        let inner: u64 = children.iter().map(Field::cost).sum();
        let shape = match (page, sized) {
            (Some(n), _) => Shape::Connection(n),
            (None, Some(n)) => Shape::SizedList(n),
            (None, None) => Shape::Object,
        };
        // One node of a connection: what `nodes { }` or `edges { node { } }` select.
        let node = children
            .iter()
            .filter_map(|c| match c.name.as_str() {
                "nodes" | "node" => Some(1 + c.inner),
                "edges" => Some(c.node),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        Ok(Field { name, shape, inner, node })
    }

    fn value(&mut self) -> Result<Argument, String> {
        Ok(match self.next()? {
            Token::Int(n) => Argument::Int(n),
            Token::Variable(v) => match self.variables.get(&v) {
                Some(Value::Number(n)) => n.as_i64().map(Argument::Int).unwrap_or(Argument::Other),
                Some(Value::Array(items)) => Argument::List(items.len()),
                _ => Argument::Other,
            },
            Token::Punct('[') => {
                let mut n = 0;
                while !self.at_punct(']') {
                    self.value()?;
                    n += 1;
                }
                self.expect(']')?;
                Argument::List(n)
            }
            Token::Punct('{') => {
                while !self.at_punct('}') {
                    self.next()?;
                    self.expect(':')?;
                    self.value()?;
                }
                self.expect('}')?;
                Argument::Other
            }
            Token::Name(_) | Token::Literal => Argument::Other,
            other => return Err(format!("unexpected {other:?} in an argument")),
        })
    }
}

enum Shape {
    Scalar,
    Object,
    Connection(u64),
    SizedList(u64),
    /// Inline fragments folded into one: the dearest branch.
    Fixed(u64),
}

struct Field {
    name: String,
    shape: Shape,
    /// The cost of what is selected inside the field.
    inner: u64,
    /// For `edges`: the cost of one `node` inside it.
    node: u64,
}

impl Field {
    fn cost(&self) -> u64 {
        match self.shape {
            Shape::Scalar => 0,
            Shape::Object => 1 + self.inner,
            Shape::Connection(first) => 2 + first * self.node_cost(),
            Shape::SizedList(n) => n * (1 + self.inner),
            Shape::Fixed(cost) => cost,
        }
    }

    /// The cost of one node of a connection, found through `nodes` or `edges.node`; a
    /// connection whose items are a plain object list (no wrapper) costs 1 + its selection.
    fn node_cost(&self) -> u64 {
        if self.node > 0 { self.node } else { 1 + self.inner }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_are_free_and_objects_cost_one() {
        assert_eq!(requested_cost("{ shop { id name } }", &json!({})).unwrap(), 1);
        assert_eq!(requested_cost("query { shop { id primaryDomain { url } } }", &json!({})).unwrap(), 2);
    }

    #[test]
    fn connections_multiply_through_nesting() {
        // products: 2 + 10 × (1 product + variants(2 + 5 × 1 variant)) = 2 + 10 × 8 = 82.
        let q = "{ products(first: 10) { nodes { id variants(first: 5) { edges { node { id } } } } } }";
        assert_eq!(requested_cost(q, &json!({})).unwrap(), 82);
        // The same with the page size as a variable, an alias and pageInfo (free).
        let q = "query P($n: Int!) { list: products(first: $n) { pageInfo { hasNextPage endCursor } nodes { id } } }";
        assert_eq!(requested_cost(q, &json!({"n": 250})).unwrap(), 2 + 250);
    }

    #[test]
    fn the_old_fulfilment_order_query_was_far_over_the_cap() {
        let old = "query F($id: ID!) { order(id: $id) { id fulfillments(first: 50) { id trackingInfo { number } } fulfillmentOrders(first: 50) { nodes { id status lineItems(first: 250) { nodes { id remainingQuantity lineItem { id sku } } } } } } }";
        // order 1 + fulfillments (2 + 50 × 2) + fulfillmentOrders (2 + 50 × (1 + 2 + 250 × 2)).
        let expected = 1 + (2 + 50 * 2) + (2 + 50 * (1 + 2 + 250 * 2));
        assert_eq!(requested_cost(old, &json!({"id": "gid://shopify/Order/1"})).unwrap(), expected);
        assert!(expected > 25_000);
    }

    #[test]
    fn mutations_cost_ten_plus_their_payload_and_lists_are_sized_by_input() {
        let m = "mutation S($input: X!, $k: String!) { inventorySetQuantities(input: $input) @idempotent(key: $k) { inventoryAdjustmentGroup { id } userErrors { code field message } } }";
        assert_eq!(requested_cost(m, &json!({"input": {}, "k": "x"})).unwrap(), 10 + 1 + 1);
        let q = "query L($ids: [ID!]!) { nodes(ids: $ids) { ... on InventoryItem { id inventoryLevel(locationId: \"x\") { quantities(names: [\"available\", \"on_hand\"]) { name quantity } } } } }";
        // 3 ids × (1 + fragment (inventoryLevel 1 + quantities 2 × 1)).
        assert_eq!(requested_cost(q, &json!({"ids": ["a", "b", "c"]})).unwrap(), 3 * (1 + 3));
    }

    #[test]
    fn unknown_page_sizes_and_named_fragments_are_refused() {
        assert!(
            requested_cost("query Q($n: Int) { products(first: $n) { nodes { id } } }", &json!({})).is_err()
        );
        assert!(requested_cost("{ shop { ...F } }", &json!({})).is_err());
        assert!(requested_cost("{ shop { id }", &json!({})).is_err());
    }
}

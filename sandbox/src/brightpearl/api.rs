//! The Brightpearl endpoints, as pure functions over [`State`]: a request in, a status and an
//! envelope out, plus the events it raised (for webhooks).

use super::search::search;
use super::state::*;
use super::warehouse::reservation_json;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Something that happened, for webhook subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `product.modified.on-hand-modified`, `goods-out-note.modified.shipped`, …
    pub full_event: &'static str,
    pub ids: Vec<u64>,
}

impl Event {
    pub fn on_hand(ids: impl IntoIterator<Item = u64>) -> Event {
        let set: BTreeSet<u64> = ids.into_iter().collect();
        Event { full_event: "product.modified.on-hand-modified", ids: set.into_iter().collect() }
    }
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub events: Vec<Event>,
}

pub(super) fn ok(response: Value) -> Answer {
    Answer { status: 200, body: json!({ "response": response }), events: vec![] }
}

pub fn error(status: u16, code: &str, message: impl Into<String>) -> Answer {
    Answer { status, body: json!({"errors": [{"code": code, "message": message.into()}]}), events: vec![] }
}

/// 404 is also the "no results" answer for multi-id GETs.
pub(super) fn not_found(what: &str) -> Answer {
    error(404, "CMNC-404", format!("{what} not found"))
}

fn list_or_404(items: Vec<Value>, what: &str) -> Answer {
    if items.is_empty() { not_found(what) } else { ok(Value::Array(items)) }
}

/// Parses an ID set and enforces the endpoint's cap. `*` means all (`None`).
pub(super) fn ids(set: &str, cap: usize) -> Result<Option<Vec<u64>>, Answer> {
    if set == "*" {
        return Ok(None);
    }
    let parsed = pearl_idset(set).ok_or_else(|| error(400, "CMNC-400", format!("invalid ID set {set:?}")))?;
    if parsed.len() > cap {
        // What Brightpearl answers over a cap is UNCONFIRMED; the sandbox says 400.
        return Err(error(400, "CMNC-400", format!("too many ids in one request: {} > {cap}", parsed.len())));
    }
    Ok(Some(parsed))
}

/// ID-set grammar: `8`, `1-5`, `34,120,7`, mixtures; ascending ranges only.
pub fn pearl_idset(set: &str) -> Option<Vec<u64>> {
    let mut out = BTreeSet::new();
    for part in set.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 100_000 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(part.parse().ok()?);
            }
        }
    }
    Some(out.into_iter().collect())
}

fn encode_idset(ids: &[u64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        while i + 1 < ids.len() && ids[i + 1] == ids[i] + 1 {
            i += 1;
        }
        parts.push(if ids[i] == start { start.to_string() } else { format!("{start}-{}", ids[i]) });
        i += 1;
    }
    parts.join(",")
}

pub fn idset_string(ids: &[u64]) -> String {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.dedup();
    encode_idset(&v)
}

/// One end of a PERIOD filter: an ISO-8601 date-time, or a date (midnight UTC), the two forms
/// clients are seen sending (`updatedOn=<iso>/`, `updatedOn=2026-01-01/`).
pub(super) fn period_end(x: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(x).ok().map(|d| d.with_timezone(&Utc)).or_else(|| {
        chrono::NaiveDate::parse_from_str(x, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc())
    })
}

pub(super) fn period_contains(filter: &str, t: DateTime<Utc>) -> bool {
    let Some((a, b)) = filter.split_once('/') else { return false };
    (a.is_empty() || period_end(a).is_some_and(|f| t >= f))
        && (b.is_empty() || period_end(b).is_some_and(|to| t <= to))
}

pub(super) fn u64_of(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn i64_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.round() as i64)),
        Value::String(s) => s.trim().parse::<f64>().ok().map(|f| f.round() as i64),
        _ => None,
    }
}

pub(super) fn f64_of(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

pub(super) fn str_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

impl State {
    /// Routes one request. `segments` are the path after `/public-api/{account}/`.
    pub fn dispatch(
        &mut self,
        method: &str,
        segments: &[&str],
        q: &HashMap<String, String>,
        body: &Value,
        max_ids: usize,
    ) -> Answer {
        let now = Utc::now();
        match (method, segments) {
            ("GET", ["product-service", "product-search"]) => self.product_search(q),
            ("GET", ["product-service", "product", set, "supplier"]) => self.product_suppliers(set, max_ids),
            ("GET", ["product-service", "product", set]) => match ids(set, max_ids) {
                Ok(Some(list)) => {
                    if let Err(refused) = self.all_products_exist(&list) {
                        return refused;
                    }
                    let items =
                        list.iter().filter_map(|id| self.products.get(id)).map(product_json).collect();
                    list_or_404(items, "products")
                }
                Ok(None) => error(400, "CMNC-400", "an ID set is required"),
                Err(e) => e,
            },
            ("GET", ["warehouse-service", "product-availability", set]) => match ids(set, max_ids) {
                Ok(Some(list)) => match self.all_products_exist(&list) {
                    Ok(()) => self.availability(&list),
                    Err(refused) => refused,
                },
                Ok(None) => error(400, "CMNC-400", "an ID set is required"),
                Err(e) => e,
            },
            ("GET", ["warehouse-service", "warehouse"]) => ok(Value::Array(
                self.warehouses.iter().map(|(id, name)| json!({"id": id, "name": name})).collect(),
            )),
            ("GET", ["warehouse-service", "warehouse", set]) => match ids(set, max_ids) {
                Ok(list) => {
                    let items = self
                        .warehouses
                        .iter()
                        .filter(|(id, _)| list.as_ref().is_none_or(|l| l.contains(id)))
                        .map(|(id, name)| json!({"id": id, "name": name}))
                        .collect();
                    list_or_404(items, "warehouses")
                }
                Err(e) => e,
            },
            ("GET", ["warehouse-service", "warehouse", wid, "product", set]) => {
                let Some(wid) = wid.parse::<u64>().ok().filter(|w| self.warehouses.contains_key(w)) else {
                    return not_found("warehouse");
                };
                match ids(set, max_ids) {
                    Ok(Some(list)) => {
                        let empty = BTreeMap::new();
                        let defaults = self.defaults.get(&wid).unwrap_or(&empty);
                        let items = list
                            .iter()
                            .filter(|id| self.products.contains_key(id))
                            .map(|id| {
                                let d = defaults.get(id).copied().unwrap_or_default();
                                json!({"productId": id, "defaultLocationId": wid * 100, "reorderLevel": d.reorder_level, "reorderQuantity": d.reorder_quantity})
                            })
                            .collect();
                        list_or_404(items, "products")
                    }
                    Ok(None) => error(400, "CMNC-400", "an ID set is required"),
                    Err(e) => e,
                }
            }
            ("GET", ["contact-service", "contact-search"]) => self.contact_search(q),
            ("GET", ["contact-service", "contact", set]) => match ids(set, max_ids) {
                Ok(Some(list)) => {
                    let items =
                        list.iter().filter_map(|id| self.contacts.get(id)).map(contact_json).collect();
                    list_or_404(items, "contacts")
                }
                Ok(None) => error(400, "CMNC-400", "an ID set is required"),
                Err(e) => e,
            },
            ("POST", ["contact-service", "postal-address"]) => {
                if body.get("addressLine1").and_then(Value::as_str).is_none_or(str::is_empty) {
                    return error(400, "CNTC-100", "addressLine1 is required");
                }
                if let Err(refused) = super::validation::country_code(body, "countryIsoCode", "CNTC-102") {
                    return refused;
                }
                let id = self.next("address");
                self.addresses.insert(id, body.clone());
                ok(json!(id))
            }
            ("POST", ["contact-service", "contact"]) => self.create_contact(body, now),
            ("POST", ["order-service", "sales-order"]) => self.create_sales_order(body, now),
            ("POST", ["order-service", "sales-credit"]) => self.create_sales_credit(body, now),
            ("GET", ["order-service", "sales-credit", set]) => self.sales_credits_get(set, max_ids),
            ("POST", ["order-service", "sales-credit", id, "close"]) => {
                self.close_sales_credit(id, body, now)
            }
            ("GET", ["accounting-service", "customer-payment-search"]) => self.customer_payment_search(q),
            ("GET", ["warehouse-service", "goods-movement-search"]) => self.goods_movement_search(q),
            ("GET", ["warehouse-service", "goods-note", "goods-out-search"]) => self.goods_out_search(q),
            ("GET", ["order-service", "sales-order", set]) => match ids(set, max_ids) {
                Ok(Some(list)) => {
                    let items = list
                        .iter()
                        .filter_map(|id| self.orders.get(id))
                        .filter(|o| o.order_type == "SO")
                        .map(|o| sales_order_json(o, &self.settings))
                        .collect();
                    list_or_404(items, "sales orders")
                }
                Ok(None) => error(400, "CMNC-400", "an ID set is required"),
                Err(e) => e,
            },
            ("GET", ["order-service", "sales-order-search"]) => self.sales_order_search(q),
            ("GET", ["order-service", "order-search"]) => self.order_search(q),
            ("POST", ["order-service", "order"]) => self.create_order(body, now),
            ("GET", ["order-service", "order", set]) => match ids(set, max_ids) {
                Ok(Some(list)) => {
                    let items = list.iter().filter_map(|id| self.orders.get(id)).map(order_json).collect();
                    list_or_404(items, "orders")
                }
                Ok(None) => error(400, "CMNC-400", "an ID set is required"),
                Err(e) => e,
            },
            ("POST", ["order-service", "order", id, "row"]) => self.add_row(id, body, now),
            ("PUT", ["order-service", "order", id, "status"]) => self.set_status(id, body, now),
            ("POST", ["order-service", "order", id, "note"]) => {
                let Some(order) = id.parse::<u64>().ok().and_then(|id| self.orders.get_mut(&id)) else {
                    return not_found("order");
                };
                order.notes.push(str_of(body.get("text")).unwrap_or_default());
                let n = self.next("note");
                ok(json!(n))
            }
            ("GET", ["order-service", "order-status"]) | ("GET", ["order-service", "order-status", _]) => {
                ok(Value::Array(ORDER_STATUSES.iter().map(order_status_json).collect()))
            }
            ("POST", ["warehouse-service", "order", id, "reservation", "warehouse", wid]) => {
                self.reserve(id, wid, body)
            }
            ("GET", ["warehouse-service", "order", id, "reservation"]) => {
                match id.parse::<u64>().ok().and_then(|id| self.reservations.get(&id)) {
                    Some(r) => ok(json!([reservation_json(r)])),
                    None => not_found("reservation"),
                }
            }
            ("GET", ["warehouse-service", "order", orders, "goods-note", "goods-out", rest @ ..]) => {
                self.goods_out_get(orders, rest.first().copied())
            }
            ("GET", ["warehouse-service", "order", orders, "goods-note", "goods-in", rest @ ..]) => {
                self.goods_in_get(orders, rest.first().copied(), max_ids)
            }
            ("POST", ["accounting-service", "customer-payment"]) => self.create_customer_payment(body, now),
            ("POST", ["integration-service", "webhook"]) => {
                let Ok(mut hook) = serde_json::from_value::<WebhookRec>(body.clone()) else {
                    return error(400, "INTC-100", "subscribeTo, httpMethod and uriTemplate are required");
                };
                hook.id = self.next("webhook");
                let id = hook.id;
                self.webhooks.insert(id, hook);
                ok(json!(id))
            }
            ("GET", ["integration-service", "webhook", rest @ ..]) => {
                let wanted = rest.first().and_then(|s| pearl_idset(s));
                ok(Value::Array(
                    self.webhooks
                        .values()
                        .filter(|w| wanted.as_ref().is_none_or(|l| l.contains(&w.id)))
                        .map(|w| json!(w))
                        .collect(),
                ))
            }
            _ => error(404, "CMNC-404", format!("no such resource: {method} /{}", segments.join("/"))),
        }
    }

    fn product_search(&self, q: &HashMap<String, String>) -> Answer {
        let wanted_ids = q.get("productId").and_then(|s| pearl_idset(s));
        let rows = self
            .products
            .values()
            .filter(|p| q.get("SKU").is_none_or(|s| &p.sku == s))
            .filter(|p| wanted_ids.as_ref().is_none_or(|l| l.contains(&p.id)))
            .filter(|p| q.get("updatedOn").is_none_or(|f| period_contains(f, p.updated_on)))
            .filter(|p| q.get("createdOn").is_none_or(|f| period_contains(f, p.created_on)))
            .map(|p| {
                vec![
                    json!(p.id),
                    json!(p.name),
                    json!(p.sku),
                    json!(p.stock_tracked),
                    json!(p.created_on),
                    json!(p.updated_on),
                    json!(p.primary_supplier_id),
                ]
            })
            .collect();
        search(
            &[
                ("productId", "IDSET"),
                ("productName", "SEARCH_STRING"),
                ("SKU", "STRING"),
                ("stockTracked", "BOOLEAN"),
                ("createdOn", "PERIOD"),
                ("updatedOn", "PERIOD"),
                ("primarySupplierId", "IDSET"),
            ],
            rows,
            q,
        )
    }

    /// `GET /product-service/product/{idSet}/supplier` → `{"<productId>": [contactId, …]}`.
    /// One id the account does not hold fails the whole set with a 400, as recorded live;
    /// products without suppliers are left out of the map.
    fn product_suppliers(&self, set: &str, max_ids: usize) -> Answer {
        let list = match ids(set, max_ids) {
            Ok(Some(list)) => list,
            Ok(None) => return error(400, "CMNC-400", "an ID set is required"),
            Err(e) => return e,
        };
        if let Some(bad) = list.iter().find(|id| !self.products.contains_key(id)) {
            return error(400, "PRDC-003", format!("product {bad} does not exist"));
        }
        let map: Map<String, Value> = list
            .iter()
            .filter_map(|id| self.products.get(id))
            .filter(|p| !p.supplier_ids.is_empty())
            .map(|p| (p.id.to_string(), json!(p.supplier_ids)))
            .collect();
        ok(Value::Object(map))
    }

    fn contact_search(&self, q: &HashMap<String, String>) -> Answer {
        // primaryEmail is a SEARCH_STRING: a case-insensitive "contains", like a text search.
        let email = q.get("primaryEmail").map(|e| e.to_ascii_lowercase());
        // Whether contacts lag their search like orders do is unknown: the hard side, they do.
        let visible_before = Utc::now() - chrono::Duration::milliseconds(self.settings.search_lag_ms as i64);
        let rows = self
            .contacts
            .values()
            .filter(|c| self.settings.search_lag_ms == 0 || c.created_on <= visible_before)
            .filter(|c| {
                email.as_ref().is_none_or(|e| {
                    c.email.as_ref().is_some_and(|ce| ce.to_ascii_lowercase().contains(e.as_str()))
                })
            })
            .filter(|c| q.get("isSupplier").is_none_or(|s| (s == "true") == c.is_supplier))
            .filter(|c| q.get("updatedOn").is_none_or(|f| period_contains(f, c.updated_on)))
            .map(|c| {
                vec![
                    json!(c.id),
                    json!(c.email),
                    json!(c.first_name),
                    json!(c.last_name),
                    json!(c.is_supplier),
                    json!(!c.is_supplier),
                    json!(c.created_on),
                    json!(c.updated_on),
                ]
            })
            .collect();
        search(
            &[
                ("contactId", "IDSET"),
                ("primaryEmail", "SEARCH_STRING"),
                ("firstName", "SEARCH_STRING"),
                ("lastName", "SEARCH_STRING"),
                ("isSupplier", "BOOLEAN"),
                ("isCustomer", "BOOLEAN"),
                ("createdOn", "PERIOD"),
                ("updatedOn", "PERIOD"),
            ],
            rows,
            q,
        )
    }

    fn sales_order_search(&self, q: &HashMap<String, String>) -> Answer {
        let now = Utc::now();
        let rows = self
            .orders
            .values()
            .filter(|o| o.order_type == "SO")
            .filter(|o| self.searchable(o.id, now))
            .filter(|o| q.get("externalRef").is_none_or(|r| o.external_ref.as_ref() == Some(r)))
            .filter(|o| {
                q.get("installedIntegrationInstanceId")
                    .is_none_or(|i| i.parse().ok() == o.installed_integration_instance_id)
            })
            .filter(|o| q.get("customerId").is_none_or(|c| c.parse() == Ok(o.contact_id)))
            .filter(|o| q.get("channelId").is_none_or(|c| c.parse().ok() == o.channel_id))
            .filter(|o| q.get("updatedOn").is_none_or(|f| period_contains(f, o.updated_on)))
            .map(|o| {
                vec![
                    json!(o.id),
                    json!(o.contact_id),
                    json!(o.status_id),
                    json!(o.created_on),
                    json!(o.updated_on),
                    json!(o.external_ref),
                    json!(o.installed_integration_instance_id),
                    json!(o.warehouse_id),
                    json!(o.channel_id),
                ]
            })
            .collect();
        search(
            &[
                ("salesOrderId", "IDSET"),
                ("customerId", "IDSET"),
                ("orderStatusId", "IDSET"),
                ("createdOn", "PERIOD"),
                ("updatedOn", "PERIOD"),
                ("externalRef", "STRING"),
                ("installedIntegrationInstanceId", "INTEGER"),
                ("warehouseId", "IDSET"),
                ("channelId", "IDSET"),
            ],
            rows,
            q,
        )
    }

    fn order_search(&self, q: &HashMap<String, String>) -> Answer {
        let type_id = |o: &OrderRec| order_type_id(&o.order_type);
        let now = Utc::now();
        let rows = self
            .orders
            .values()
            .filter(|o| self.searchable(o.id, now))
            .filter(|o| {
                q.get("installedIntegrationInstanceId")
                    .is_none_or(|i| i.parse().ok() == o.installed_integration_instance_id)
            })
            .filter(|o| {
                q.get("parentOrderId")
                    .is_none_or(|p| p.parse().ok() == self.credits.get(&o.id).map(|c| c.parent_id))
            })
            .filter(|o| q.get("orderTypeId").is_none_or(|t| t.parse() == Ok(type_id(o))))
            .filter(|o| q.get("contactId").is_none_or(|c| c.parse() == Ok(o.contact_id)))
            .filter(|o| {
                q.get("orderStatusId")
                    .is_none_or(|s| pearl_idset(s).is_some_and(|l| l.contains(&o.status_id)))
            })
            .filter(|o| q.get("externalRef").is_none_or(|r| o.external_ref.as_ref() == Some(r)))
            .filter(|o| q.get("updatedOn").is_none_or(|f| period_contains(f, o.updated_on)))
            .map(|o| {
                vec![
                    json!(o.id),
                    json!(type_id(o)),
                    json!(o.contact_id),
                    json!(o.status_id),
                    json!(o.created_on),
                    json!(o.updated_on),
                    json!(o.external_ref),
                    json!(o.warehouse_id),
                    json!(o.installed_integration_instance_id),
                    json!(self.credits.get(&o.id).map(|c| c.parent_id)),
                ]
            })
            .collect();
        search(
            &[
                ("orderId", "IDSET"),
                ("orderTypeId", "IDSET"),
                ("contactId", "IDSET"),
                ("orderStatusId", "IDSET"),
                ("createdOn", "PERIOD"),
                ("updatedOn", "PERIOD"),
                ("externalRef", "STRING"),
                ("warehouseId", "IDSET"),
                ("installedIntegrationInstanceId", "INTEGER"),
                ("parentOrderId", "IDSET"),
            ],
            rows,
            q,
        )
    }

    fn availability(&self, list: &[u64]) -> Answer {
        let mut out = Map::new();
        for id in list {
            if !self.products.contains_key(id) {
                continue;
            }
            let mut total = (0i64, 0i64);
            let mut warehouses = Map::new();
            for (w, s) in self.stock.get(id).into_iter().flatten() {
                total.0 += s.on_hand;
                total.1 += s.allocated;
                warehouses.insert(
                    w.to_string(),
                    json!({"inStock": s.on_hand + s.allocated, "onHand": s.on_hand, "allocated": s.allocated, "inTransit": 0}),
                );
            }
            out.insert(
                id.to_string(),
                json!({"total": {"inStock": total.0 + total.1, "onHand": total.0, "allocated": total.1, "inTransit": 0}, "warehouses": warehouses}),
            );
        }
        if out.is_empty() { not_found("products") } else { ok(Value::Object(out)) }
    }

    fn create_contact(&mut self, body: &Value, now: DateTime<Utc>) -> Answer {
        let first = str_of(body.get("firstName")).unwrap_or_default();
        let last = str_of(body.get("lastName")).unwrap_or_default();
        if first.chars().count() > 32 || last.chars().count() > 32 {
            return error(400, "CNTC-101", "names are limited to 32 characters");
        }
        let id = self.next("contact");
        self.contacts.insert(
            id,
            ContactRec {
                id,
                first_name: first,
                last_name: last,
                email: str_of(body.pointer("/communication/emails/PRI/email")),
                is_supplier: body
                    .pointer("/relationshipToAccount/isSupplier")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                postal_address_id: body.pointer("/postAddressIds/DEF").and_then(u64_of),
                created_on: now,
                updated_on: now,
            },
        );
        ok(json!(id))
    }

    pub(super) fn parse_rows(&mut self, rows: &[Value]) -> Result<Vec<RowRec>, Answer> {
        let mut out = Vec::new();
        for r in rows {
            let product_id = r.get("productId").and_then(u64_of);
            if let Some(p) = product_id
                && !self.products.contains_key(&p)
            {
                return Err(error(400, "ORDC-012", format!("product {p} does not exist")));
            }
            let name = str_of(r.get("name"))
                .or_else(|| product_id.and_then(|p| self.products.get(&p)).map(|p| p.name.clone()))
                .ok_or_else(|| error(400, "ORDC-013", "a row needs productId or name"))?;
            let raw_quantity = r.get("quantity").map(|q| q.get("magnitude").unwrap_or(q));
            let quantity = raw_quantity
                .and_then(i64_of)
                .ok_or_else(|| error(400, "ORDC-014", "a row needs a quantity"))?;
            let stock_tracked =
                product_id.and_then(|p| self.products.get(&p)).is_some_and(|p| p.stock_tracked);
            if stock_tracked && raw_quantity.is_some_and(|q| !super::validation::is_whole(q)) {
                return Err(error(
                    400,
                    "ORDC-016",
                    format!(
                        "quantity {} must be a whole number for stock-tracked product",
                        raw_quantity.map(Value::to_string).unwrap_or_default()
                    ),
                ));
            }
            out.push(RowRec {
                id: self.next("row"),
                product_id,
                name,
                quantity,
                net: r.get("net").or_else(|| r.pointer("/rowValue/rowNet/value")).map(f64_of).unwrap_or(0.0),
                tax: r.get("tax").or_else(|| r.pointer("/rowValue/rowTax/value")).map(f64_of).unwrap_or(0.0),
                tax_code: str_of(r.get("taxCode")).or_else(|| str_of(r.pointer("/rowValue/taxCode"))),
                external_ref: str_of(r.get("externalRef")),
            });
        }
        Ok(out)
    }

    fn create_order(&mut self, body: &Value, now: DateTime<Utc>) -> Answer {
        let kind = str_of(body.get("orderTypeCode")).unwrap_or_default();
        if !["SO", "PO"].contains(&kind.as_str()) {
            return error(400, "ORDC-001", "orderTypeCode must be SO or PO in the sandbox");
        }
        if kind == "PO"
            && let Some(bad) =
                body.get("warehouseId").and_then(u64_of).filter(|w| !self.warehouses.contains_key(w))
        {
            return error(400, "ORDC-012", format!("warehouse {bad} does not exist"));
        }
        let party = if kind == "PO" { "/parties/supplier/contactId" } else { "/parties/customer/contactId" };
        let Some(contact) = body.pointer(party).and_then(u64_of).filter(|c| self.contacts.contains_key(c))
        else {
            return error(400, "ORDC-011", format!("{party} must name an existing contact"));
        };
        let id = self.next("order");
        self.orders.insert(
            id,
            OrderRec {
                id,
                order_type: kind.clone(),
                contact_id: contact,
                reference: str_of(body.get("reference")),
                external_ref: str_of(body.get("externalRef")),
                installed_integration_instance_id: None,
                channel_id: body.pointer("/assignment/current/channelId").and_then(u64_of),
                currency: str_of(body.pointer("/currency/orderCurrencyCode")).unwrap_or_else(|| "GBP".into()),
                price_list_id: body.get("priceListId").and_then(u64_of),
                warehouse_id: body.get("warehouseId").and_then(u64_of),
                status_id: body
                    .pointer("/orderStatus/orderStatusId")
                    .and_then(u64_of)
                    .unwrap_or(if kind == "PO" { PO_STATUS_PENDING } else { SO_STATUS_NEW }),
                delivery: body.get("delivery").cloned().unwrap_or(Value::Null),
                rows: vec![],
                notes: vec![],
                created_on: now,
                updated_on: now,
            },
        );
        ok(json!(id))
    }

    fn add_row(&mut self, id: &str, body: &Value, now: DateTime<Utc>) -> Answer {
        let Some(order_id) = id.parse::<u64>().ok().filter(|id| self.orders.contains_key(id)) else {
            return not_found("order");
        };
        if body.pointer("/rowValue/taxCode").is_none() && body.get("taxCode").is_none() {
            return error(400, "ORDC-015", "taxCode is required");
        }
        if let Err(refused) = super::validation::order_row_values(body) {
            return refused;
        }
        let rows = match self.parse_rows(std::slice::from_ref(body)) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let Some(order) = self.orders.get_mut(&order_id) else { return not_found("order") };
        let row_id = rows.first().map(|r| r.id).unwrap_or_default();
        order.rows.extend(rows);
        order.updated_on = now;
        ok(json!(row_id))
    }

    fn set_status(&mut self, id: &str, body: &Value, now: DateTime<Utc>) -> Answer {
        let Some(order_id) = id.parse::<u64>().ok().filter(|id| self.orders.contains_key(id)) else {
            return not_found("order");
        };
        let Some(status) = body.get("orderStatusId").and_then(u64_of) else {
            return error(400, "ORDC-020", "orderStatusId is required");
        };
        let kind = self.orders.get(&order_id).map(|o| o.order_type.clone()).unwrap_or_default();
        let Some((_, name, _)) = ORDER_STATUSES.iter().find(|(s, _, t)| *s == status && *t == kind) else {
            return error(400, "ORDC-021", format!("status {status} does not exist for {kind} orders"));
        };
        let mut events = vec![];
        if name.starts_with("Cancelled") {
            if self.goods_out.values().any(|n| n.order_id == order_id) {
                return error(400, "ORDC-022", "an order with goods-out notes cannot be cancelled");
            }
            if self.payments.iter().any(|p| p.order_id == order_id) {
                return error(400, "ORDC-023", "an order with payments cannot be cancelled");
            }
            // Cancelling removes the reservation and gives the stock back.
            if let Some(r) = self.reservations.remove(&order_id) {
                for (product, qty) in r.rows.values() {
                    let s = self.stock.entry(*product).or_default().entry(r.warehouse_id).or_default();
                    s.allocated -= qty;
                    s.on_hand += qty;
                }
                events.push(Event::on_hand(r.rows.values().map(|(p, _)| *p)));
            }
        }
        if let Some(order) = self.orders.get_mut(&order_id) {
            order.status_id = status;
            order.updated_on = now;
            if let Some(text) = body.pointer("/orderNote/text").and_then(Value::as_str) {
                order.notes.push(text.to_string());
            }
        }
        let mut a = ok(Value::Null);
        a.events = events;
        a
    }
}

pub fn product_json(p: &ProductRec) -> Value {
    json!({
        "id": p.id,
        "identity": {"sku": p.sku},
        "stock": {"stockTracked": p.stock_tracked},
        "salesChannels": [{"productName": p.name}],
        // Brightpearl's product GET has no supplier list: only the primary (apis.md §8.1).
        "primarySupplierId": p.primary_supplier_id,
        "createdOn": p.created_on,
        "updatedOn": p.updated_on,
    })
}

/// A status as the list serves it: the recorded fields, `state` from [`order_status_state`].
fn order_status_json(&(id, name, order_type): &(u64, &str, &str)) -> Value {
    json!({
        "statusId": id, "name": name, "orderTypeCode": order_type, "sortOrder": id,
        "disabled": false, "visible": true, "state": order_status_state(id),
    })
}

fn contact_json(c: &ContactRec) -> Value {
    json!({
        "contactId": c.id,
        "firstName": c.first_name,
        "lastName": c.last_name,
        "communication": {"emails": {"PRI": {"email": c.email}}},
        "relationshipToAccount": {"isSupplier": c.is_supplier},
        "postAddressIds": {"DEF": c.postal_address_id},
    })
}

pub(super) fn sales_order_json(o: &OrderRec, settings: &Settings) -> Value {
    // Brightpearl's own totals, summed from the stored rows (4 dp, as Brightpearl keeps them).
    let dp4 = |v: f64| (v * 10_000.0).round() / 10_000.0;
    let net = dp4(o.rows.iter().map(|r| r.net).sum());
    let tax = dp4(o.rows.iter().map(|r| r.tax).sum());
    let skew = settings.total_value_skew_4dp as f64 / 10_000.0;
    json!({
        "totalValue": {"net": dp4(net + skew), "taxAmount": tax, "total": dp4(net + tax + skew)},
        "id": o.id,
        "customer": {"id": o.contact_id},
        "ref": o.reference,
        "externalRef": o.external_ref,
        "installedIntegrationInstanceId": o.installed_integration_instance_id,
        "channelId": o.channel_id,
        "statusId": o.status_id,
        "warehouseId": o.warehouse_id,
        "priceListId": o.price_list_id,
        "currency": {"code": o.currency},
        "delivery": o.delivery,
        "rows": o.rows.iter().map(|r| json!({
            "id": r.id, "productId": r.product_id, "name": r.name, "quantity": r.quantity,
            "net": r.net, "tax": r.tax, "taxCode": r.tax_code, "externalRef": r.external_ref,
        })).collect::<Vec<_>>(),
    })
}

fn order_json(o: &OrderRec) -> Value {
    let party = if o.order_type == "PO" { "supplier" } else { "customer" };
    let rows: Map<String, Value> = o
        .rows
        .iter()
        .map(|r| {
            (
                r.id.to_string(),
                json!({
                    "productId": r.product_id, "productName": r.name,
                    "quantity": {"magnitude": format!("{}.0000", r.quantity)},
                    "rowValue": {"taxCode": r.tax_code, "rowNet": {"value": r.net}, "rowTax": {"value": r.tax}},
                    "externalRef": r.external_ref,
                }),
            )
        })
        .collect();
    json!({
        "id": o.id,
        "orderTypeCode": o.order_type,
        "reference": o.reference,
        "externalRef": o.external_ref,
        "orderStatus": {"orderStatusId": o.status_id},
        "parties": {party: {"contactId": o.contact_id}},
        "warehouseId": o.warehouse_id,
        "currency": {"orderCurrencyCode": o.currency},
        "orderRows": rows,
    })
}

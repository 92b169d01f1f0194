//! The search resources' common envelope (apis.md §1.7, §8.1): filters checked against the
//! columns (a bad one is the recorded 500 `CMNC-018`), paging on `firstResult`/`pageSize` with
//! `morePagesAvailable`, and `columns=` selection.

use super::api::{Answer, error, ok, period_end};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Query parameters of every search that are not filters.
const SEARCH_CONTROLS: &[&str] = &["pageSize", "firstResult", "columns", "sort"];

/// The recorded answer to a filter a search cannot use: HTTP 500 with `CMNC-018`.
fn bad_filter(name: &str, value: &str, why: &str) -> Answer {
    error(500, "CMNC-018", format!("The filter {name}={value} cannot be parsed as: {why}"))
}

/// Checks every filter against the search's columns: an unknown column, a value its type
/// cannot hold, or a range on an IDSET column is refused the way Brightpearl refuses it.
fn check_filters(columns: &[(&str, &str)], q: &HashMap<String, String>) -> Result<(), Answer> {
    for (name, value) in q {
        if SEARCH_CONTROLS.contains(&name.as_str()) {
            continue;
        }
        let Some((_, kind)) = columns.iter().find(|(c, _)| c == name) else {
            return Err(bad_filter(name, value, "a column of this search"));
        };
        let ok = match *kind {
            "IDSET" => value.split(',').all(|p| p.trim().parse::<u64>().is_ok()),
            "INTEGER" => value.trim().parse::<i64>().is_ok(),
            "BOOLEAN" => value == "true" || value == "false",
            "PERIOD" => value.split_once('/').is_some_and(|(a, b)| {
                let p = |x: &str| x.is_empty() || period_end(x).is_some();
                p(a) && p(b) && !(a.is_empty() && b.is_empty())
            }),
            _ => true,
        };
        if !ok {
            let why = match *kind {
                "IDSET" => "IDSET (a list of ids; ranges are not accepted here)",
                "INTEGER" => "INTEGER",
                "BOOLEAN" => "BOOLEAN",
                _ => "PERIOD",
            };
            return Err(bad_filter(name, value, why));
        }
    }
    Ok(())
}

/// The ids of an IDSET filter (a comma list); `check_filters` has vetted it.
pub(super) fn idset_filter(q: &HashMap<String, String>, name: &str) -> Option<Vec<u64>> {
    q.get(name).map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect())
}

/// A search answer: column metadata, paging by `firstResult`/`pageSize` (default and max 500)
/// with `morePagesAvailable`, and optional `columns=` selection. Filters are checked first.
pub(super) fn search(columns: &[(&str, &str)], rows: Vec<Vec<Value>>, q: &HashMap<String, String>) -> Answer {
    if let Err(refused) = check_filters(columns, q) {
        return refused;
    }
    let page_size = q.get("pageSize").and_then(|s| s.parse::<usize>().ok()).unwrap_or(500).clamp(1, 500);
    let first = q.get("firstResult").and_then(|s| s.parse::<usize>().ok()).unwrap_or(1).max(1);
    let selected: Vec<usize> = match q.get("columns") {
        Some(list) => {
            list.split(',').filter_map(|c| columns.iter().position(|(n, _)| *n == c.trim())).collect()
        }
        None => (0..columns.len()).collect(),
    };
    let available = rows.len();
    let page: Vec<Value> = rows
        .into_iter()
        .skip(first - 1)
        .take(page_size)
        .map(|r| Value::Array(selected.iter().map(|&i| r.get(i).cloned().unwrap_or(Value::Null)).collect()))
        .collect();
    let returned = page.len();
    let last = if returned == 0 { 0 } else { first + returned - 1 };
    let cols: Vec<Value> = selected
        .iter()
        .map(|&i| json!({"name": columns[i].0, "sortable": true, "filterable": true, "reportDataType": columns[i].1, "required": false}))
        .collect();
    ok(json!({
        "results": page,
        "metaData": {
            "morePagesAvailable": returned > 0 && last < available,
            "resultsAvailable": available,
            "resultsReturned": returned,
            "firstResult": if returned == 0 { 0 } else { first },
            "lastResult": last,
            "columns": cols,
        }
    }))
}

//! Brightpearl ID sets: `8`, `1000-1010`, `34,120,7` and mixtures such as `34-40,120,1000-1010`.
//! Only ascending ranges are valid. We always send sorted, de-duplicated ids compressed into
//! ranges, split so that no request carries more ids than the endpoint accepts.

use crate::error::{Error, Result};

/// The most ids a parsed set may expand to; a webhook saying `1-999999999` is bad input, not
/// a reason to allocate gigabytes.
pub const MAX_PARSED_IDS: usize = 100_000;

/// Encodes ids as a compact ID set: sorted, de-duplicated, runs of three or more as ranges.
pub fn encode(ids: &[u64]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    encode_sorted(&sorted)
}

fn encode_sorted(sorted: &[u64]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        match end - start {
            0 => out.push_str(&start.to_string()),
            // Two ids are as short as a comma list and read more plainly.
            1 => out.push_str(&format!("{start},{end}")),
            _ => out.push_str(&format!("{start}-{end}")),
        }
        i += 1;
    }
    out
}

/// Splits ids into encoded ID sets of at most `max_per_set` ids each (sorted, de-duplicated).
pub fn chunks(ids: &[u64], max_per_set: usize) -> Vec<String> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.chunks(max_per_set.max(1)).map(encode_sorted).collect()
}

/// Parses an ID set as Brightpearl sends it (webhook `id`, `${resource-id}`). Whitespace is
/// ignored; descending ranges, empty parts and sets over [`MAX_PARSED_IDS`] are rejected.
/// Returns the ids sorted and de-duplicated.
pub fn parse(set: &str) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    let compact: String = set.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err(Error::BadInput("empty ID set".into()));
    }
    for part in compact.split(',') {
        let parse_id = |s: &str| {
            s.parse::<u64>().map_err(|_| Error::BadInput(format!("bad id {s:?} in ID set {set:?}")))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_id(a)?, parse_id(b)?);
                if b < a {
                    return Err(Error::BadInput(format!("descending range {part:?} in ID set")));
                }
                if (b - a) as usize >= MAX_PARSED_IDS || ids.len() + (b - a) as usize >= MAX_PARSED_IDS {
                    return Err(Error::BadInput(format!("ID set {set:?} is too large")));
                }
                ids.extend(a..=b);
            }
            None => {
                ids.push(parse_id(part)?);
                if ids.len() > MAX_PARSED_IDS {
                    return Err(Error::BadInput(format!("ID set {set:?} is too large")));
                }
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_sorted_deduplicated_ranges() {
        assert_eq!(encode(&[1010, 34, 35, 36, 37, 120, 1000, 36, 1001]), "34-37,120,1000,1001,1010");
        assert_eq!(encode(&[8]), "8");
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[3, 2, 1]), "1-3");
    }

    #[test]
    fn chunks_respect_the_cap_and_round_trip() {
        let ids: Vec<u64> = (1..=1001).chain([5000, 5002]).collect();
        let sets = chunks(&ids, 200);
        assert_eq!(sets.len(), 6);
        assert_eq!(sets[0], "1-200");
        let mut back = Vec::new();
        for s in &sets {
            let part = parse(s).unwrap();
            assert!(part.len() <= 200);
            back.extend(part);
        }
        assert_eq!(back, ids);
        assert!(chunks(&[], 200).is_empty());
    }

    #[test]
    fn parses_webhook_id_sets() {
        assert_eq!(parse("1-5,99,202").unwrap(), vec![1, 2, 3, 4, 5, 99, 202]);
        assert_eq!(parse(" 7 , 3,3 ").unwrap(), vec![3, 7]);
        assert_eq!(parse("5906").unwrap(), vec![5906]);
        assert!(parse("5-1").is_err());
        assert!(parse("").is_err());
        assert!(parse("1,,2").is_err());
        assert!(parse("a-3").is_err());
        assert!(parse("1-999999999").is_err());
    }
}

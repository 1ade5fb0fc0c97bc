//! `uniqueFor`: how long an idempotency key keeps a second task with the same key out
//! (docs/API.md, "Uniqueness"). The scope belongs to the insert that gives it, as River's
//! `UniqueOpts` do: it says which task already holding the key counts as a duplicate.
//! The rules that free a key are `crate::queue::unique`'s.

use serde_json::Value as Json;

use crate::{DbcError, Result};

/// Longest period: one year.
pub const MAX_PERIOD_MS: i64 = 365 * 24 * 3600 * 1000;

/// What a task already holding the key must be for a new insert to be a duplicate of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueFor {
    /// pending or running: once it ended (completed, failed, cancelled) the key is free
    Active,
    /// inserted less than this many milliseconds ago (a sliding window)
    Period(i64),
}

impl UniqueFor {
    /// `uniqueFor` of a task input (`field` names it in errors): absent or null for the
    /// default (any task holding the key, until it is deleted or purged), `"active"`, or
    /// a period in milliseconds (1 ms to one year). It needs an `idempotencyKey`.
    pub fn parse(field: &str, v: Option<&Json>, keyed: bool) -> Result<Option<UniqueFor>> {
        let scope = match v {
            None | Some(Json::Null) => return Ok(None),
            Some(Json::String(s)) if s == "active" => UniqueFor::Active,
            Some(Json::Number(n)) => match n.as_i64() {
                Some(ms) if (1..=MAX_PERIOD_MS).contains(&ms) => UniqueFor::Period(ms),
                _ => return Err(bad(field)),
            },
            Some(_) => return Err(bad(field)),
        };
        if !keyed {
            return Err(DbcError::validation(
                field,
                "uniqueFor needs an idempotencyKey: it says how long the key keeps duplicates out",
            ));
        }
        Ok(Some(scope))
    }
}

fn bad(field: &str) -> DbcError {
    DbcError::validation(
        field,
        format!("uniqueFor must be \"active\" or a period in milliseconds (1 to {MAX_PERIOD_MS})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scopes_parse_and_bad_ones_are_refused() {
        let p = |v: Json, keyed| UniqueFor::parse("uniqueFor", Some(&v), keyed);
        assert_eq!(p(Json::Null, true).ok(), Some(None));
        assert_eq!(p(json!("active"), true).ok(), Some(Some(UniqueFor::Active)));
        assert_eq!(
            p(json!(300000), true).ok(),
            Some(Some(UniqueFor::Period(300000)))
        );
        for v in [
            json!("forever"),
            json!(0),
            json!(-5),
            json!(1.5),
            json!(MAX_PERIOD_MS + 1),
            json!({}),
            json!(true),
        ] {
            match p(v.clone(), true) {
                Err(DbcError::Validation { field, .. }) => assert_eq!(field, "uniqueFor", "{v}"),
                other => panic!("{v}: {other:?}"),
            }
        }
        assert!(p(json!("active"), false).is_err(), "needs a key");
    }
}

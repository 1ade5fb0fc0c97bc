//! Rewrites `:name` placeholders into the provider's positional form.
//!
//! The scanner skips string literals, quoted identifiers, comments, PostgreSQL's `::`
//! casts and dollar-quoted bodies, so a colon inside them is never taken for a parameter.

use crate::value::{Param, Params};
use crate::{DbcError, Provider, Result};

/// Turns `Params::Named` into positional parameters and rewrites the SQL to match.
/// Positional and empty parameters pass through unchanged.
pub fn bind_named(provider: Provider, sql: &str, params: Params) -> Result<(String, Vec<Param>)> {
    let named = match params {
        Params::None => return Ok((sql.to_string(), Vec::new())),
        Params::Positional(p) => return Ok((sql.to_string(), p)),
        Params::Named(n) => n,
    };
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut order: Vec<String> = Vec::new();
    let mut values = Vec::new();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() {
                    if b[i] == b'\\' && q != b'"' && provider == Provider::Mariadb {
                        i += 2;
                        continue;
                    }
                    if b[i] == q {
                        // a doubled quote is an escaped quote
                        if i + 1 < b.len() && b[i + 1] == q {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'$' if provider == Provider::Postgres => {
                // $tag$ ... $tag$ (dollar quoting); $1 is a positional parameter
                let start = i;
                let mut j = i + 1;
                while j < b.len()
                    && (b[j].is_ascii_alphanumeric() || b[j] == b'_')
                    && !b[i + 1].is_ascii_digit()
                {
                    j += 1;
                }
                if j < b.len() && b[j] == b'$' {
                    let tag = &sql[start..=j];
                    match sql[j + 1..].find(tag) {
                        Some(end) => i = j + 1 + end + tag.len(),
                        None => i = b.len(),
                    }
                } else {
                    i += 1;
                }
            }
            b':' if b.get(i + 1) == Some(&b':') => i += 2,
            b':' if b
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') =>
            {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                let name = &sql[i + 1..j];
                out.push_str(&sql[copied..i]);
                let value = named
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| {
                        DbcError::validation(
                            format!("params.{name}"),
                            format!("the SQL uses :{name} but msg.params has no {name:?}"),
                        )
                    })?;
                match provider {
                    Provider::Postgres => {
                        // one $n per distinct name, so a name used twice binds once
                        let n = match order.iter().position(|o| o == name) {
                            Some(pos) => pos + 1,
                            None => {
                                order.push(name.to_string());
                                values.push(value);
                                order.len()
                            }
                        };
                        out.push('$');
                        out.push_str(&n.to_string());
                    }
                    _ => {
                        out.push('?');
                        values.push(value);
                    }
                }
                i = j;
                copied = j;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    Ok((out, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(pairs: &[(&str, i64)]) -> Params {
        Params::Named(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Param::Int(*v)))
                .collect(),
        )
    }

    #[test]
    fn rewrites_for_each_provider() {
        let sql = "select :a, ':b', \"x:y\", now()::text, :a + :c -- :d\n";
        let (pg, v) = bind_named(Provider::Postgres, sql, named(&[("a", 1), ("c", 3)])).unwrap();
        assert_eq!(pg, "select $1, ':b', \"x:y\", now()::text, $1 + $2 -- :d\n");
        assert_eq!(v, vec![Param::Int(1), Param::Int(3)]);
        let (my, v) = bind_named(Provider::Mariadb, sql, named(&[("a", 1), ("c", 3)])).unwrap();
        assert_eq!(my, "select ?, ':b', \"x:y\", now()::text, ? + ? -- :d\n");
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn missing_name_is_a_validation_error() {
        let err = bind_named(Provider::Sqlite, "select :zz", named(&[("a", 1)])).unwrap_err();
        assert_eq!(err.code(), "DBC_VALIDATION");
    }

    #[test]
    fn dollar_quotes_are_skipped() {
        let sql = "do $$ begin perform :x; end $$; select :y";
        let (pg, v) = bind_named(Provider::Postgres, sql, named(&[("y", 2)])).unwrap();
        assert_eq!(pg, "do $$ begin perform :x; end $$; select $1");
        assert_eq!(v, vec![Param::Int(2)]);
    }
}

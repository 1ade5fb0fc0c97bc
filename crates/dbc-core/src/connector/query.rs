//! [`Connector::query`]: SQL with parameters on the database the router picks, run once
//! more elsewhere when the router moves it after an outage. Input is checked before any
//! connection is taken (shared with the streamed form, `stream.rs`).

use std::time::Instant;

use super::{Connector, Failure, OpOptions, OpValue, Outcome};
use crate::db::Trace;
use crate::op::Op;
use crate::sqltext::bind_named;
use crate::value::{Param, Params};
use crate::{DbcError, Provider, Result};

impl Connector {
    /// The input checks of `query` and its streaming form: open, some SQL, placeholders
    /// and values that bind — so bad input never waits for a connection. Returns the
    /// statement bound for the current provider.
    pub(super) fn check_query(
        &self,
        sql: &str,
        params: &Params,
    ) -> std::result::Result<(String, Vec<Param>), Failure> {
        self.check_open("query")?;
        if sql.trim().is_empty() {
            return Err(self.fail(
                "query",
                DbcError::validation("sql", "no SQL: set it in the node or in msg.topic"),
            ));
        }
        bind_named(self.provider(), sql, params.clone()).map_err(|e| self.fail("query", e))
    }

    /// Runs SQL with parameters (`:name` placeholders for named parameters).
    pub async fn query(
        &self,
        sql: &str,
        params: Params,
        opts: &OpOptions,
    ) -> std::result::Result<Outcome, Failure> {
        let bound = self.check_query(sql, &params)?;
        let first = self.provider();
        let started = Instant::now();
        let mut trace = opts.debug.then(Trace::default);
        let _ticket = self.router.ticket().await;
        let (r, provider) = match self.router.pick() {
            Err(e) => (Err(e), self.provider()),
            Ok(mut b) => {
                let mut attempt = 0;
                loop {
                    let r = async {
                        let stmt = bound_for(b.provider(), first, &bound, sql, &params)?;
                        if let Some(t) = trace.as_mut() {
                            t.statements.clear();
                        }
                        let mut conn = self.acquire(b).await?;
                        conn.exec("query", &stmt.0, &stmt.1, trace.as_mut()).await
                    }
                    .await;
                    match &r {
                        Err(e) => match self.router.reroute(b, e, attempt).await {
                            Some(next) => {
                                b = next;
                                attempt += 1;
                            }
                            None => break (r, b.provider()),
                        },
                        Ok(_) => break (r, b.provider()),
                    }
                }
            }
        };
        self.metrics.record(Op::Query, started.elapsed(), r.is_ok());
        match r {
            Ok(out) => Ok(Outcome {
                provider,
                value: OpValue::Rows(out),
                debug: self.debug_info(provider, trace),
            }),
            Err(e) => Err(self.fail_on(provider, "query", e)),
        }
    }
}

/// The statement for `provider`: the form bound up front when the operation still runs
/// where it started, else bound again for the provider it moved to.
pub(super) fn bound_for<'a>(
    runs_on: Provider,
    bound_on: Provider,
    bound: &'a (String, Vec<Param>),
    sql: &str,
    params: &Params,
) -> Result<std::borrow::Cow<'a, (String, Vec<Param>)>> {
    if runs_on == bound_on {
        Ok(std::borrow::Cow::Borrowed(bound))
    } else {
        bind_named(runs_on, sql, params.clone()).map(std::borrow::Cow::Owned)
    }
}

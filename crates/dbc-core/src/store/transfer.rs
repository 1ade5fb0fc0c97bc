//! The failback's statements (`sql/<dialect>/transfer.sql`): reading every row of a
//! table of the schema description ([`crate::migrate::TABLES`]) from one database and
//! writing it into another, converting each value to the destination's form. The order
//! of the move, and what it deletes afterwards, is `route::reconcile`'s.

use crate::db::Conn;
use crate::migrate::{Kind, Table, TASKS};
use crate::store::Store;
use crate::task::{read_int, read_json, read_text, read_time};
use crate::value::{parse_any_time, Param, Value};
use crate::Result;

/// Rows per statement of a move.
pub const CHUNK: usize = 200;

/// Which rows of a table [`Store::read_rows`] reads.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    /// every row
    All,
    /// the rows of these tasks (`task_id IN …`)
    OfTasks(&'a [Param]),
    /// the rows not tied to a task (`task_id IS NULL`)
    Loose,
}

/// Which rows the fallback's clean-up deletes, by id ([`Store::delete_moved`]).
#[derive(Debug, Clone, Copy)]
pub enum Moved {
    /// tasks (their executions, error rows and dependencies go with them)
    Tasks,
    /// error rows not tied to a task
    Errors,
    /// workflows, each only once no task of it is left
    Workflows,
    /// queue states, by queue name
    Queues,
    /// schedules, by name
    Schedules,
}

impl Store {
    /// Whether the tables still hold a task, a workflow, a queue state or a schedule (a fallback
    /// with work of an outage, or leftovers of an interrupted failback).
    pub async fn any_rows_left(&self, conn: &mut Conn) -> Result<bool> {
        let out = conn
            .exec("leftovers", &self.sql().any_rows_left, &[], None)
            .await?;
        Ok(!out.rows.is_empty())
    }

    /// `t`'s name, column list and key, put into a transfer statement (whose table is
    /// `{{prefix}}{{table}}`, the prefix put in when the store was built).
    fn for_table(&self, sql: &str, t: &Table) -> String {
        sql.replace("{{table}}", t.name)
            .replace("{{columns}}", &columns(t))
            .replace("{{key}}", &t.key.join(", "))
    }

    /// The rows of `t` (every column, in the description's order), ordered by its key.
    pub async fn read_rows(
        &self,
        conn: &mut Conn,
        t: &Table,
        which: Rows<'_>,
    ) -> Result<Vec<Vec<Value>>> {
        let (sql, params): (String, &[Param]) = match which {
            Rows::All => (self.for_table(&self.sql().transfer_read_all, t), &[]),
            Rows::Loose => (self.for_table(&self.sql().transfer_read_loose, t), &[]),
            Rows::OfTasks(ids) => (
                self.for_table(&self.sql().transfer_read_by_task, t)
                    .replace("{{ids}}", &self.placeholders(1, ids.len())),
                ids,
            ),
        };
        Ok(conn.exec("failback read", &sql, params, None).await?.rows)
    }

    /// Up to [`CHUNK`] tasks (every column) in id order, after the id `after`.
    pub async fn tasks_after(
        &self,
        conn: &mut Conn,
        after: Option<&str>,
    ) -> Result<Vec<Vec<Value>>> {
        let (sql, params) = match after {
            None => (&self.sql().transfer_first_tasks, vec![]),
            Some(a) => (
                &self.sql().transfer_tasks_after,
                vec![Param::Text(a.to_string())],
            ),
        };
        let sql = self
            .for_table(sql, &TASKS)
            .replace("{{limit}}", &CHUNK.to_string());
        Ok(conn.exec("failback read", &sql, &params, None).await?.rows)
    }

    /// `(id, idempotency key)` of the tasks holding any of `keys`.
    pub async fn tasks_with_keys(
        &self,
        conn: &mut Conn,
        keys: &[String],
    ) -> Result<Vec<(String, String)>> {
        let sql = self
            .sql()
            .transfer_find_keys
            .replace("{{ids}}", &self.placeholders(1, keys.len()));
        let params: Vec<Param> = keys.iter().map(|k| Param::Text(k.clone())).collect();
        let out = conn.exec("failback keys", &sql, &params, None).await?;
        Ok(out
            .rows
            .iter()
            .filter_map(|r| Some((read_text(&r[0])?, read_text(&r[1])?)))
            .collect())
    }

    /// Writes `rows` (read from any database by [`Store::read_rows`]) into `t`: a row
    /// whose key exists takes the new values when `update`, else is left as it is.
    /// Returns how many rows were written.
    pub async fn write_rows(
        &self,
        conn: &mut Conn,
        t: &Table,
        rows: &[Vec<Value>],
        update: bool,
    ) -> Result<u64> {
        let others: Vec<&str> = t
            .cols
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| !t.key.contains(c))
            .collect();
        let sql = if update && !others.is_empty() {
            let set = others
                .iter()
                .map(|c| self.sql().transfer_set_column.replace("{{column}}", c))
                .collect::<Vec<_>>()
                .join(", ");
            self.for_table(&self.sql().transfer_upsert, t)
                .replace("{{set}}", &set)
        } else {
            self.for_table(&self.sql().transfer_insert_new, t)
        };
        let width = t.cols.len();
        let mut n = 0;
        for chunk in rows.chunks(CHUNK) {
            let mut params = Vec::with_capacity(chunk.len() * width);
            let mut values = Vec::with_capacity(chunk.len());
            for (r, row) in chunk.iter().enumerate() {
                values.push(format!("({})", self.placeholders(r * width + 1, width)));
                for (i, (_, kind)) in t.cols.iter().enumerate() {
                    params.push(self.carry(*kind, &row[i]));
                }
            }
            let sql = sql.replace("{{rows}}", &values.join(", "));
            n += conn
                .exec("failback write", &sql, &params, None)
                .await?
                .rows_affected
                // MariaDB counts an updated row twice
                .min(chunk.len() as u64);
        }
        Ok(n)
    }

    /// Deletes the rows with these ids, [`CHUNK`] at a time.
    pub async fn delete_moved(&self, conn: &mut Conn, what: Moved, ids: &[Param]) -> Result<()> {
        let sql = match what {
            Moved::Tasks => &self.sql().transfer_delete_tasks,
            Moved::Errors => &self.sql().transfer_delete_errors,
            Moved::Workflows => &self.sql().transfer_delete_workflows,
            Moved::Queues => &self.sql().transfer_delete_queues,
            Moved::Schedules => &self.sql().transfer_delete_schedules,
        };
        for chunk in ids.chunks(CHUNK) {
            let sql = sql.replace("{{ids}}", &self.placeholders(1, chunk.len()));
            conn.exec("failback clear", &sql, chunk, None).await?;
        }
        Ok(())
    }

    /// A value read from any of the databases as this one stores it.
    fn carry(&self, kind: Kind, v: &Value) -> Param {
        if matches!(v, Value::Null) {
            return Param::Null;
        }
        match kind {
            Kind::Text => read_text(v).map(Param::Text).unwrap_or(Param::Null),
            Kind::Int => Param::Int(read_int(v)),
            Kind::Json => self.json(Some(&read_json(v))),
            Kind::Time => match read_time(v)
                .map(Param::Text)
                .and_then(|p| parse_any_time("time", &p).ok())
            {
                Some(t) => self.time(t),
                None => Param::Null,
            },
        }
    }
}

fn columns(t: &Table) -> String {
    t.cols
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::{DEPENDENCIES, TABLES};
    use crate::Provider;

    #[test]
    fn every_table_renders_complete_statements_on_every_store() {
        for p in [Provider::Postgres, Provider::Mariadb, Provider::Sqlite] {
            let store = Store::new(p, "pre_").unwrap();
            for t in TABLES {
                for sql in [
                    &store.sql().transfer_read_all,
                    &store.sql().transfer_upsert,
                    &store.sql().transfer_insert_new,
                ] {
                    let sql = store.for_table(sql, t);
                    assert!(sql.contains(&format!("pre_{} ", t.name)), "{p:?}: {sql}");
                    let left = sql.replace("{{rows}}", "").replace("{{set}}", "");
                    assert!(!left.contains("{{"), "{p:?}: {sql}");
                }
            }
        }
    }

    #[test]
    fn an_existing_key_is_updated_or_kept_in_each_dialect() {
        let set = |p| {
            let store = Store::new(p, "").unwrap();
            store
                .sql()
                .transfer_set_column
                .replace("{{column}}", "status")
        };
        assert_eq!(set(Provider::Postgres), "status = excluded.status");
        assert_eq!(set(Provider::Sqlite), "status = excluded.status");
        assert_eq!(set(Provider::Mariadb), "status = VALUES(status)");
        let my = Store::new(Provider::Mariadb, "").unwrap();
        let keep = my.for_table(&my.sql().transfer_insert_new, &DEPENDENCIES);
        assert!(
            keep.starts_with("INSERT IGNORE INTO task_dependencies"),
            "{keep}"
        );
        let pg = Store::new(Provider::Postgres, "").unwrap();
        let keep = pg.for_table(&pg.sql().transfer_insert_new, &DEPENDENCIES);
        assert!(
            keep.ends_with("ON CONFLICT (task_id, depends_on) DO NOTHING"),
            "{keep}"
        );
    }
}

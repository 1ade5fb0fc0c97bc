//! Streamed queries: chunks, errors before and after rows went out, and the connection
//! released when a stream is dropped or stopped.

use super::*;

/// `SELECT x` for x = 1..=n, in order (MariaDB stops recursive CTEs at 1000 rows by
/// default: it has its sequence tables instead).
pub(crate) fn series(p: Provider, n: u32) -> String {
    match p {
        Provider::Postgres => format!("SELECT g AS x FROM generate_series(1, {n}) AS g"),
        Provider::Mariadb => format!("SELECT seq AS x FROM seq_1_to_{n}"),
        Provider::Sqlite => format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) SELECT x FROM c"
        ),
    }
}

/// Every chunk of a stream, or the chunks before its error and the error.
pub(crate) async fn drain(
    s: &mut dbc_core::connector::RowStream,
) -> (
    Vec<dbc_core::connector::StreamChunk>,
    Option<dbc_core::connector::Failure>,
) {
    let mut got = Vec::new();
    loop {
        match s.next().await {
            Ok(Some(c)) => got.push(c),
            Ok(None) => return (got, None),
            Err(f) => return (got, Some(f)),
        }
    }
}

pub(crate) async fn stream_chunks(p: Provider) {
    with_db(p, |db| async move {
        let opts = OpOptions {
            debug: true,
            ..OpOptions::default()
        };
        let mut s = db
            .conn
            .query_stream(series(p, 2500), Params::None, 1000, opts);
        let (got, err) = drain(&mut s).await;
        assert!(err.is_none(), "{err:?}");
        let sizes: Vec<usize> = got.iter().map(|c| c.chunk.rows.len()).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
        let counts: Vec<u64> = got.iter().map(|c| c.chunk.row_count).collect();
        assert_eq!(counts, vec![1000, 2000, 2500]);
        let done: Vec<bool> = got.iter().map(|c| c.chunk.done).collect();
        assert_eq!(done, vec![false, false, true]);
        assert!(got.iter().all(|c| c.chunk.columns == vec!["x"]));
        let xs: Vec<Value> = got
            .iter()
            .flat_map(|c| c.chunk.rows.iter().map(|r| r[0].clone()))
            .collect();
        assert_eq!(xs, (1..=2500).map(Value::Int).collect::<Vec<_>>());
        // debug comes once, on the last chunk, with the statement's total
        assert!(got[..2].iter().all(|c| c.debug.is_none()));
        let d = got[2].debug.as_ref().expect("debug on the last chunk");
        assert_eq!(d.statements.len(), 1);
        assert_eq!(d.statements[0].rows, 2500);
        // after the end: None, and again None
        assert!(s.next().await.expect("no error after the end").is_none());

        // exactly a multiple of the chunk size: the last full chunk is the one marked done
        let mut s = db
            .conn
            .query_stream(series(p, 20), Params::None, 10, OpOptions::default());
        let (got, _) = drain(&mut s).await;
        assert_eq!(
            got.iter()
                .map(|c| (c.chunk.rows.len(), c.chunk.done))
                .collect::<Vec<_>>(),
            vec![(10, false), (10, true)]
        );

        // no rows: one empty chunk, done
        let sql = format!("SELECT x FROM ({}) AS s WHERE x < 0", series(p, 3));
        let mut s = db
            .conn
            .query_stream(sql, Params::None, 10, OpOptions::default());
        let (got, err) = drain(&mut s).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got.len(), 1);
        assert!(got[0].chunk.done && got[0].chunk.rows.is_empty());
        // (SQLite reports the connection's last change count for a SELECT without rows,
        // as query does)
        if p != Provider::Sqlite {
            assert_eq!(got[0].chunk.row_count, 0);
        }

        // a statement without rows: rowCount is what it changed, with its insert id
        let table = db
            .user_table(
                "streamed",
                &format!("{}, qty INTEGER NOT NULL", db.serial_id()),
            )
            .await;
        let sql = format!("INSERT INTO {table} (qty) VALUES (:a), (:b)");
        let params = Params::Named(vec![
            ("a".into(), Param::Int(1)),
            ("b".into(), Param::Int(2)),
        ]);
        let mut s = db.conn.query_stream(sql, params, 10, OpOptions::default());
        let (got, err) = drain(&mut s).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].chunk.row_count, 2);
        assert_eq!(
            got[0].chunk.last_insert_id.is_some(),
            p != Provider::Postgres
        );

        // positional parameters are bound as in query
        let sql = format!(
            "SELECT qty FROM {table} WHERE qty > {} ORDER BY qty",
            db.ph(1)
        );
        let mut s = db.conn.query_stream(
            sql,
            Params::Positional(vec![Param::Int(1)]),
            10,
            OpOptions::default(),
        );
        let (got, _) = drain(&mut s).await;
        assert_eq!(got[0].chunk.rows, vec![vec![Value::Int(2)]]);
    })
    .await;
}

pub(crate) async fn stream_errors(p: Provider) {
    with_db(p, |db| async move {
        // bad SQL fails on the first next, as DBC_QUERY
        let mut s = db
            .conn
            .query_stream("SELEC 1".into(), Params::None, 10, OpOptions::default());
        let (got, err) = drain(&mut s).await;
        assert!(got.is_empty());
        let f = err.expect("an error");
        assert_code(&f, "DBC_QUERY");
        assert_eq!(f.operation, "query");
        assert!(s.next().await.expect("None after the error").is_none());
        // a named parameter without a value and a wrong count: validation, as in query
        let mut s = db.conn.query_stream(
            "SELECT :nope".into(),
            Params::Named(vec![]),
            10,
            OpOptions::default(),
        );
        assert_validation(&drain(&mut s).await.1.expect("an error"), "params.nope");
        let sql = format!("SELECT {} AS a", db.ph(1));
        let mut s = db
            .conn
            .query_stream(sql, Params::Positional(vec![]), 10, OpOptions::default());
        assert_validation(&drain(&mut s).await.1.expect("an error"), "params");
        let mut s = db
            .conn
            .query_stream("  ".into(), Params::None, 10, OpOptions::default());
        assert_validation(&drain(&mut s).await.1.expect("an error"), "sql");

        // an error after rows went out ends the stream with the error
        let fail = match p {
            Provider::Sqlite => "json('{' || x)",
            _ => "(SELECT 1 UNION SELECT 2)",
        };
        let sql = format!(
            "SELECT CASE WHEN x < 2500 THEN x ELSE {fail} END AS x FROM ({}) AS s",
            series(p, 3000)
        );
        let mut s = db
            .conn
            .query_stream(sql, Params::None, 100, OpOptions::default());
        let (got, err) = drain(&mut s).await;
        let f = err.expect("an error mid-way");
        assert_code(&f, "DBC_QUERY");
        assert!(!got.is_empty(), "rows before the error were handed over");
        assert!(got
            .iter()
            .all(|c| !c.chunk.done && c.chunk.rows.len() == 100));
        // the connection went back to the pool usable
        assert_eq!(
            db.sql("SELECT 1 AS one", vec![]).await.rows,
            vec![vec![Value::Int(1)]]
        );

        // a closed connector
        let other = std::sync::Arc::new(db.open_another(|_| {}).await.expect("another connector"));
        other.close().await;
        let mut s = other.query_stream(series(p, 3), Params::None, 10, OpOptions::default());
        assert_code(&drain(&mut s).await.1.expect("an error"), "DBC_CONNECTION");
    })
    .await;
}

/// Waits (at most 10 s) until no connection of the pool is in use.
pub(crate) async fn pool_settles(db: &Db) -> dbc_core::db::PoolState {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let st = db.conn.pool_state().state;
        if st.in_use == 0 || Instant::now() > until {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn stream_dropped_early_releases_connection(p: Provider) {
    with_db(p, |db| async move {
        db.sql("SELECT 1", vec![]).await;
        let before = pool_settles(&db).await;
        assert_eq!(before.in_use, 0);
        // dropped after the first chunk of a large result
        let mut s =
            db.conn
                .query_stream(series(p, 200_000), Params::None, 100, OpOptions::default());
        let first = s.next().await.expect("a chunk").expect("not the end");
        assert_eq!(first.chunk.rows.len(), 100);
        assert_eq!(
            db.conn.pool_state().state.in_use,
            1,
            "the stream holds its connection"
        );
        drop(s);
        let after = pool_settles(&db).await;
        assert_eq!(after.in_use, 0, "the connection was released: {after:?}");
        // SQLite's goes back to the pool; a network connection is closed instead of
        // drained (see Conn::exec_chunked)
        if p == Provider::Sqlite {
            assert!(after.idle >= 1, "and went back to the pool: {after:?}");
        }

        // stopped from another handle while a next waits
        let mut s =
            db.conn
                .query_stream(series(p, 200_000), Params::None, 100, OpOptions::default());
        s.next().await.expect("a chunk");
        let stop = s.stopper();
        stop.stop();
        assert!(s.next().await.expect("no error").is_none());
        let after = pool_settles(&db).await;
        assert_eq!(after.in_use, 0, "{after:?}");
        assert_eq!(
            db.sql("SELECT 2 AS two", vec![]).await.rows,
            vec![vec![Value::Int(2)]]
        );
    })
    .await;
}

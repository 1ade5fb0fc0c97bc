//! Parameters: positional and named binding, `rows_affected`, `last_insert_id`.

use super::*;

pub(crate) async fn params_positional(p: Provider) {
    with_db(p, |db| async move {
        let table = db
            .user_table(
                "items",
                &format!(
                    "{}, name VARCHAR(100) NOT NULL, qty INTEGER NOT NULL",
                    db.serial_id()
                ),
            )
            .await;
        let insert = format!(
            "INSERT INTO {table} (name, qty) VALUES ({}, {})",
            db.ph(1),
            db.ph(2)
        );
        let out = db
            .sql(&insert, vec![Param::Text("apple".into()), Param::Int(3)])
            .await;
        assert_eq!(out.rows_affected, 1);
        assert!(out.rows.is_empty());
        match db.p {
            // PostgreSQL has no last-insert id; RETURNING is the way
            Provider::Postgres => assert_eq!(out.last_insert_id, None),
            Provider::Mariadb | Provider::Sqlite => {
                assert_eq!(out.last_insert_id, Some(Value::Int(1)))
            }
        }
        // one multi-row insert
        let multi = format!(
            "INSERT INTO {table} (name, qty) VALUES ({}, {}), ({}, {}), ({}, {})",
            db.ph(1),
            db.ph(2),
            db.ph(3),
            db.ph(4),
            db.ph(5),
            db.ph(6)
        );
        let out = db
            .sql(
                &multi,
                vec![
                    Param::Text("pear".into()),
                    Param::Int(5),
                    Param::Text("plum".into()),
                    Param::Int(7),
                    Param::Text("fig".into()),
                    Param::Int(9),
                ],
            )
            .await;
        assert_eq!(out.rows_affected, 3);
        match db.p {
            Provider::Postgres => assert_eq!(out.last_insert_id, None),
            // MariaDB reports the first id of a multi-row insert, SQLite the last rowid
            Provider::Mariadb => assert_eq!(out.last_insert_id, Some(Value::Int(2))),
            Provider::Sqlite => assert_eq!(out.last_insert_id, Some(Value::Int(4))),
        }
        if db.p == Provider::Postgres {
            let out = db
                .sql(
                    &format!("INSERT INTO {table} (name, qty) VALUES ($1, $2) RETURNING id"),
                    vec![Param::Text("kiwi".into()), Param::Int(1)],
                )
                .await;
            assert_eq!(out.rows, vec![vec![Value::Int(5)]]);
            assert_eq!(out.rows_affected, 1);
        } else {
            db.sql(&insert, vec![Param::Text("kiwi".into()), Param::Int(1)])
                .await;
        }
        let update = format!(
            "UPDATE {table} SET qty = qty + {} WHERE qty >= {}",
            db.ph(1),
            db.ph(2)
        );
        let out = db.sql(&update, vec![Param::Int(10), Param::Int(5)]).await;
        assert_eq!(out.rows_affected, 3);
        assert_eq!(out.last_insert_id, None, "an UPDATE reports no insert id");
        let select = format!(
            "SELECT id, name, qty FROM {table} WHERE qty > {} ORDER BY id",
            db.ph(1)
        );
        let out = db.sql(&select, vec![Param::Int(10)]).await;
        assert_eq!(out.columns, vec!["id", "name", "qty"]);
        assert_eq!(
            out.rows,
            vec![
                vec![Value::Int(2), Value::Text("pear".into()), Value::Int(15)],
                vec![Value::Int(3), Value::Text("plum".into()), Value::Int(17)],
                vec![Value::Int(4), Value::Text("fig".into()), Value::Int(19)],
            ]
        );
        let out = db
            .sql(
                &format!("DELETE FROM {table} WHERE name = {}", db.ph(1)),
                vec![Param::Text("nothing".into())],
            )
            .await;
        assert_eq!(out.rows_affected, 0);
        let out = db
            .sql(
                &format!("DELETE FROM {table} WHERE qty < {}", db.ph(1)),
                vec![Param::Int(10)],
            )
            .await;
        assert_eq!(out.rows_affected, 2);
        assert_eq!(out.last_insert_id, None, "a DELETE reports no insert id");
        // leading comments do not hide an INSERT
        let commented = format!(
            "/* note */ -- why\n INSERT INTO {table} (name, qty) VALUES ({}, {})",
            db.ph(1),
            db.ph(2)
        );
        let out = db
            .sql(&commented, vec![Param::Text("lime".into()), Param::Int(2)])
            .await;
        assert_eq!(out.rows_affected, 1);
        let expected = if db.p == Provider::Postgres {
            None
        } else {
            Some(Value::Int(6))
        };
        assert_eq!(out.last_insert_id, expected);
        // a SELECT reports none either
        let out = db
            .sql(
                &format!("SELECT name FROM {table} WHERE id = {}", db.ph(1)),
                vec![Param::Int(6)],
            )
            .await;
        assert_eq!(out.rows, vec![vec![Value::Text("lime".into())]]);
        assert_eq!(out.last_insert_id, None, "a SELECT reports no insert id");
    })
    .await
}

pub(crate) async fn params_named(p: Provider) {
    with_db(p, |db| async move {
        let table = db.user_table("named", &format!("{}, name VARCHAR(100) NOT NULL, qty INTEGER NOT NULL", db.serial_id())).await;
        let q = |sql: String, params: Vec<(&str, Param)>| {
            let db = db.clone();
            let params = Params::Named(params.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
            async move {
                match db.conn.query(&sql, params, &OpOptions::default()).await {
                    Ok(o) => rows_of(o),
                    Err(f) => panic!("[{}] {sql}: {}", db.p, f.error),
                }
            }
        };
        let out = q(
            format!("INSERT INTO {table} (name, qty) VALUES (:name, :qty)"),
            vec![("qty", Param::Int(4)), ("name", Param::Text("a:b".into()))],
        )
        .await;
        assert_eq!(out.rows_affected, 1);
        if db.p != Provider::Postgres {
            assert_eq!(out.last_insert_id, Some(Value::Int(1)));
        }
        q(
            format!("INSERT INTO {table} (name, qty) VALUES (:n1, :q1), (:n2, :q2)"),
            vec![
                ("n1", Param::Text("b".into())),
                ("q1", Param::Int(6)),
                ("n2", Param::Text("c".into())),
                ("q2", Param::Int(8)),
            ],
        )
        .await;
        // one name used twice, a ':colon' inside a string literal, and a `--` comment
        let sql = format!(
            "SELECT name, qty, ':notaparam' AS lit FROM {table} WHERE qty >= :min AND (qty <= :max OR qty = :min) -- :ignored\n ORDER BY qty"
        );
        let out = q(sql, vec![("min", Param::Int(5)), ("max", Param::Int(8)), ("unused", Param::Int(0))]).await;
        assert_eq!(out.columns, vec!["name", "qty", "lit"]);
        assert_eq!(
            out.rows,
            vec![
                vec![Value::Text("b".into()), Value::Int(6), Value::Text(":notaparam".into())],
                vec![Value::Text("c".into()), Value::Int(8), Value::Text(":notaparam".into())],
            ]
        );
        let out = q(format!("UPDATE {table} SET qty = :qty WHERE name = :name"), vec![("qty", Param::Int(1)), ("name", Param::Text("a:b".into()))]).await;
        assert_eq!(out.rows_affected, 1);
        let out = q(format!("SELECT qty FROM {table} WHERE name = :name"), vec![("name", Param::Text("a:b".into()))]).await;
        assert_eq!(out.rows, vec![vec![Value::Int(1)]]);
        if db.p == Provider::Postgres {
            // `::` casts are not parameters
            let out = q("SELECT :v::int + 1 AS x".into(), vec![("v", Param::Text("41".into()))]).await;
            assert_eq!(out.rows, vec![vec![Value::Int(42)]]);
        }
    })
    .await
}

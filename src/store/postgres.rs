//! The PostgreSQL backend of the store (issue 12): one connection per
//! [`Store`](super::Store), like SQLite's, whose schema the shared migration
//! list keeps in step with SQLite's. TLS follows libpq's `sslmode`
//! (`pg_tls`); statements run through [`PgConn`](super::sql::PgConn).

use std::time::Duration;

use tokio_postgres::config::SslMode as WireSslMode;
use tokio_postgres::Config;

use super::migrations::{self, Step, MIGRATIONS};
use super::pg_tls::RustlsConnect;
use super::sql::PgConn;
use super::{Result, StoreError};
use crate::config::{PostgresConfig, SslMode};

/// The advisory lock the migration runner holds while it reads and moves the
/// schema version (the bytes of "dogetowr"). `pg_advisory_xact_lock` keys are
/// per database, so this serialises the towers opening one database only.
pub const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"dogetowr");

/// The driver's settings for `settings` (the resolved `store.url`) and the
/// TLS connector its `sslmode` asks for.
pub fn connect_settings(settings: &PostgresConfig) -> Result<(Config, RustlsConnect)> {
    let mut config: Config = settings.url.parse().map_err(StoreError::PostgresUrl)?;
    if let Some(password) = &settings.password {
        config.password(password.expose());
    }
    // tokio-postgres knows disable/prefer/require; the certificate checks
    // of require and the verify modes are the connector's.
    config.ssl_mode(match settings.ssl_mode {
        SslMode::Disable => WireSslMode::Disable,
        SslMode::Prefer => WireSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireSslMode::Require,
    });
    let tls = RustlsConnect::new(settings.ssl_mode, settings.root_cert.as_deref())
        .map_err(StoreError::PostgresTls)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("dogetower");
    }
    // A server that vanished without closing the connection (a cut cable, a
    // frozen VM) is noticed in seconds instead of the kernel's two hours.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(5));
    config.keepalives_interval(Duration::from_secs(2));
    config.keepalives_retries(3);
    config.tcp_user_timeout(Duration::from_secs(15));
    Ok((config, tls))
}

/// Connects to the database `settings` names and brings its schema up to date.
pub fn open(settings: &PostgresConfig) -> Result<PgConn> {
    let (config, tls) = connect_settings(settings)?;
    let shown = redacted(&config);
    let conn =
        PgConn::connect(config, tls).map_err(|error| StoreError::PostgresOpen { url: shown, error })?;
    migrate(&conn)?;
    Ok(conn)
}

/// The PostgreSQL runner of [`migrations::MIGRATIONS`] (the SQLite one is
/// `Store::migrate`): one transaction per migration, each holding
/// [`MIGRATION_LOCK`] from before it reads the version until it commits,
/// so towers opening a new database at once apply each migration once.
fn migrate(conn: &PgConn) -> Result<()> {
    for migration in MIGRATIONS {
        // READ COMMITTED whatever the database's default: each statement
        // then sees what the lock's previous holder committed. (Under
        // REPEATABLE READ the snapshot would be taken by the lock's own
        // statement, before the wait, and hide the other tower's work.)
        conn.begin("BEGIN ISOLATION LEVEL READ COMMITTED")?;
        let outcome = (|| -> Result<()> {
            conn.batch(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))?;
            // Under the lock too: two sessions creating the same table at once
            // can fail on PostgreSQL's catalog even with IF NOT EXISTS.
            conn.batch(migrations::POSTGRES_LEDGER)?;
            let current = conn.query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?;
            let current: i64 = current[0].try_get(0)?;
            if migrations::step(version(current)?, migration)? == Step::Skip {
                return Ok(());
            }
            let (version, name) = (migration.version, migration.name);
            let applied = conn.batch(migration.postgres).and_then(|()| {
                conn.batch(&format!(
                    "INSERT INTO schema_migrations (version, name, applied_at) \
                     VALUES ({version}, '{name}', EXTRACT(EPOCH FROM now())::BIGINT)"
                ))
            });
            applied.map_err(|error| StoreError::PostgresMigration { version, name, error })?;
            tracing::info!(version, name, "applied store migration");
            Ok(())
        })();
        let ended = conn.end(outcome.is_ok());
        outcome?;
        ended?;
    }
    Ok(())
}

fn version(value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt("schema_migrations.version"))
}

/// The address of `config` for messages: user, hosts, ports and database, never the password.
pub fn redacted(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::super::pg_test_db;
    use super::super::Store;
    use super::*;

    /// Per table: its columns in order as (name, type, not null, position in the primary key).
    type Columns = BTreeMap<String, Vec<(String, String, bool, i64)>>;
    /// Per table: its indexes (explicit ones by name, UNIQUE constraints as
    /// "unique") with their columns, sorted.
    type Indexes = BTreeMap<String, Vec<(String, Vec<String>)>>;

    fn sqlite_tables(store: &Store) -> Vec<String> {
        store
            .exec()
            .rows(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                &[],
                |r| r.text(0),
            )
            .unwrap()
    }

    fn sqlite_schema(store: &Store) -> (Columns, Indexes) {
        let conn = store.sqlite_conn();
        let tables = sqlite_tables(store);
        let (mut columns, mut indexes) = (Columns::new(), Indexes::new());
        for table in tables {
            let cols = conn
                .prepare(&format!("PRAGMA table_info({table})"))
                .unwrap()
                .query_map([], |r| {
                    let (name, ty, notnull, pk): (String, String, bool, i64) =
                        (r.get(1)?, r.get(2)?, r.get(3)?, r.get(5)?);
                    let ty = match ty.as_str() {
                        "INTEGER" => "bigint",
                        "BLOB" => "bytea",
                        "TEXT" => "text",
                        other => panic!("{table}.{name}: no PostgreSQL twin for {other}"),
                    };
                    // A primary key is NOT NULL in PostgreSQL, and is meant to be in SQLite.
                    Ok((name, ty.to_string(), notnull || pk > 0, pk))
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            columns.insert(table.clone(), cols);
            let list: Vec<(String, String)> = conn
                .prepare(&format!("PRAGMA index_list({table})"))
                .unwrap()
                .query_map([], |r| Ok((r.get(1)?, r.get(3)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let mut found = Vec::new();
            for (index, origin) in list {
                let cols: Vec<String> = conn
                    .prepare(&format!("PRAGMA index_info({index})"))
                    .unwrap()
                    .query_map([], |r| r.get(2))
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap();
                match origin.as_str() {
                    "c" => found.push((index, cols)),
                    "u" => found.push(("unique".to_string(), cols)),
                    _ => {} // the primary key, compared with the columns
                }
            }
            found.sort();
            indexes.insert(table, found);
        }
        (columns, indexes)
    }

    /// Every foreign key as (table, columns, referenced table, referenced columns), sorted.
    type ForeignKeys = Vec<(String, Vec<String>, String, Vec<String>)>;
    /// SQLite's foreign keys of one table by their id: (columns, referenced table, referenced columns).
    type SqliteKeys = BTreeMap<(String, i64), (Vec<String>, String, Vec<String>)>;

    fn sqlite_foreign_keys(store: &Store) -> ForeignKeys {
        let conn = store.sqlite_conn();
        let mut keys = SqliteKeys::new();
        let tables = sqlite_tables(store);
        for table in tables {
            let rows: Vec<(i64, String, String, String)> = conn
                .prepare(&format!("PRAGMA foreign_key_list({table})"))
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            for (id, parent, from, to) in rows {
                let key = keys
                    .entry((table.clone(), id))
                    .or_insert_with(|| (Vec::new(), parent, Vec::new()));
                key.0.push(from);
                key.2.push(to);
            }
        }
        let mut keys: ForeignKeys = keys
            .into_iter()
            .map(|((table, _), (from, parent, to))| (table, from, parent, to))
            .collect();
        keys.sort();
        keys
    }

    fn postgres_foreign_keys(store: &Store) -> ForeignKeys {
        let client = store.pg();
        let mut keys: ForeignKeys = client
            .query(
                "SELECT t.relname::text,
                        ARRAY(SELECT a.attname::text
                                FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
                                JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                               ORDER BY k.n),
                        r.relname::text,
                        ARRAY(SELECT a.attname::text
                                FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n)
                                JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
                               ORDER BY k.n)
                   FROM pg_constraint c
                   JOIN pg_class t ON t.oid = c.conrelid
                   JOIN pg_class r ON r.oid = c.confrelid
                   JOIN pg_namespace s ON s.oid = t.relnamespace
                  WHERE c.contype = 'f' AND s.nspname = current_schema()",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        keys.sort();
        keys
    }

    fn postgres_schema(store: &Store) -> (Columns, Indexes) {
        let client = store.pg();
        let mut columns = Columns::new();
        for row in client
            .query(
                "SELECT c.table_name::text, c.column_name::text, c.data_type::text,
                        c.is_nullable::text = 'NO',
                        COALESCE((SELECT k.ordinal_position::bigint
                                    FROM information_schema.table_constraints t
                                    JOIN information_schema.key_column_usage k
                                      ON k.constraint_name = t.constraint_name
                                     AND k.table_schema = t.table_schema
                                     AND k.table_name = t.table_name
                                   WHERE t.constraint_type = 'PRIMARY KEY'
                                     AND t.table_schema = c.table_schema
                                     AND t.table_name = c.table_name
                                     AND k.column_name = c.column_name), 0)
                   FROM information_schema.columns c
                  WHERE c.table_schema = current_schema()
                  ORDER BY c.table_name, c.ordinal_position",
                &[],
            )
            .unwrap()
        {
            columns
                .entry(row.get(0))
                .or_default()
                .push((row.get(1), row.get(2), row.get(3), row.get(4)));
        }
        let mut indexes = Indexes::new();
        for table in columns.keys() {
            indexes.insert(table.clone(), Vec::new());
        }
        for row in client
            .query(
                "SELECT t.relname::text,
                        CASE WHEN con.contype = 'u' THEN 'unique' ELSE i.relname::text END,
                        ARRAY(SELECT a.attname::text
                                FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                                JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                               ORDER BY k.n)
                   FROM pg_index x
                   JOIN pg_class i ON i.oid = x.indexrelid
                   JOIN pg_class t ON t.oid = x.indrelid
                   JOIN pg_namespace s ON s.oid = t.relnamespace
                   LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid
                  WHERE s.nspname = current_schema() AND NOT x.indisprimary",
                &[],
            )
            .unwrap()
        {
            let table: String = row.get(0);
            indexes.entry(table).or_default().push((row.get(1), row.get(2)));
        }
        for found in indexes.values_mut() {
            found.sort();
        }
        (columns, indexes)
    }

    fn ledger(store: &Store) -> Vec<(i64, String, i64)> {
        let client = store.pg();
        client
            .query(
                "SELECT version, name, applied_at FROM schema_migrations ORDER BY version",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    /// What `store.url = "<url>"` resolves to.
    fn settings(url: &str) -> PostgresConfig {
        PostgresConfig::from_url(url, Path::new("/etc/dogetower")).unwrap()
    }

    /// `url` with one more query parameter.
    fn with_param(url: &str, param: &str) -> String {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}{param}")
    }

    fn listed() -> Vec<(i64, String)> {
        MIGRATIONS
            .iter()
            .map(|m| (i64::from(m.version), m.name.to_string()))
            .collect()
    }

    #[test]
    fn migrations_give_sqlites_tables_columns_indexes_and_keys() {
        let Some(db) = pg_test_db::fresh("migrations_give_sqlites_tables_columns_indexes_and_keys") else {
            return;
        };
        let store = Store::open_postgres(&settings(&db.url)).unwrap();
        assert_eq!(store.schema_version().unwrap(), migrations::latest_version());
        let applied: Vec<(i64, String)> = ledger(&store).into_iter().map(|(v, n, _)| (v, n)).collect();
        assert_eq!(applied, listed());

        let sqlite = Store::open_in_memory().unwrap();
        let (sqlite_columns, sqlite_indexes) = sqlite_schema(&sqlite);
        let (pg_columns, pg_indexes) = postgres_schema(&store);
        assert_eq!(
            sqlite_columns.keys().collect::<Vec<_>>(),
            pg_columns.keys().collect::<Vec<_>>(),
            "the same tables"
        );
        for (table, columns) in &sqlite_columns {
            assert_eq!(columns, &pg_columns[table], "columns of {table}");
        }
        assert_eq!(sqlite_indexes, pg_indexes);
        let sqlite_keys = sqlite_foreign_keys(&sqlite);
        assert!(sqlite_keys.len() >= 8, "{sqlite_keys:?}");
        assert_eq!(sqlite_keys, postgres_foreign_keys(&store));
        assert!(pg_indexes["channels"]
            .iter()
            .any(|(n, _)| n == "channels_by_state"));
    }

    #[test]
    fn reopening_applies_nothing_and_keeps_the_data() {
        let Some(db) = pg_test_db::fresh("reopening_applies_nothing_and_keeps_the_data") else {
            return;
        };
        let store = Store::open_postgres(&settings(&db.url)).unwrap();
        let before = ledger(&store);
        store
            .pg()
            .execute(
                "INSERT INTO headers (height, hash, prev_hash, time, median_time_past) \
                 VALUES (7, '\\x07', '\\x06', 1, 2)",
                &[],
            )
            .unwrap();
        drop(store);
        let store = Store::open_postgres(&settings(&db.url)).unwrap();
        assert_eq!(ledger(&store), before);
        assert_eq!(store.schema_version().unwrap(), migrations::latest_version());
        let heights: i64 = store
            .pg()
            .query("SELECT COUNT(*) FROM headers WHERE height = 7", &[])
            .unwrap()[0]
            .get(0);
        assert_eq!(heights, 1);
    }

    #[test]
    fn a_newer_schema_is_refused_as_sqlite_refuses_it() {
        let Some(db) = pg_test_db::fresh("a_newer_schema_is_refused_as_sqlite_refuses_it") else {
            return;
        };
        let store = Store::open_postgres(&settings(&db.url)).unwrap();
        store
            .pg()
            .execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)", &[])
            .unwrap();
        drop(store);
        let refused = Store::open_postgres(&settings(&db.url))
            .err()
            .expect("a newer schema is refused");
        assert!(
            matches!(refused, StoreError::TooNew { found: 999, known } if known == migrations::latest_version()),
            "{refused:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let sqlite = Store::open(&path).unwrap();
        sqlite
            .sqlite_conn()
            .execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)", [])
            .unwrap();
        drop(sqlite);
        let sqlite_refused = Store::open(&path).err().expect("SQLite refuses it too");
        assert_eq!(refused.to_string(), sqlite_refused.to_string());
    }

    #[test]
    fn concurrent_opens_of_a_new_database_migrate_once() {
        let Some(db) = pg_test_db::fresh("concurrent_opens_of_a_new_database_migrate_once") else {
            return;
        };
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let url = db.url.clone();
                std::thread::spawn(move || Store::open_postgres(&settings(&url)))
            })
            .collect();
        let mut stores = Vec::new();
        for open in opens {
            stores.push(open.join().unwrap().expect("every opener succeeds"));
        }
        for store in &stores {
            assert_eq!(store.schema_version().unwrap(), migrations::latest_version());
        }
        let applied: Vec<(i64, String)> = ledger(&stores[0]).into_iter().map(|(v, n, _)| (v, n)).collect();
        assert_eq!(applied, listed());
    }

    #[test]
    fn a_wrong_address_is_reported_without_the_password() {
        let refused = Store::open_postgres(&settings("postgres://someone:hunter2@127.0.0.1:1/nowhere"))
            .err()
            .expect("nothing listens on port 1");
        let message = refused.to_string();
        assert!(
            message.starts_with("store postgres://someone@127.0.0.1:1/nowhere: "),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn sslmode_disable_and_prefer_connect_to_a_server_without_tls() {
        let Some(db) = pg_test_db::fresh("sslmode_disable_and_prefer_connect_to_a_server_without_tls") else {
            return;
        };
        for mode in ["sslmode=disable", "sslmode=prefer"] {
            let settings = settings(&with_param(&db.url, mode));
            let store = Store::open_postgres(&settings).unwrap_or_else(|e| panic!("{mode}: {e}"));
            let client = store.pg();
            let tls: bool = client
                .query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
                .unwrap()[0]
                .get(0);
            assert!(!tls, "{mode}: the throwaway server has no TLS");
        }
    }

    #[test]
    fn sslmode_require_and_verify_refuse_a_server_without_tls() {
        let Some(db) = pg_test_db::fresh("sslmode_require_and_verify_refuse_a_server_without_tls") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        // Any well-formed CA certificate: the server offers no TLS, so the
        // connection fails before a certificate is seen.
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, TEST_CA_PEM).unwrap();
        for mode in [
            "sslmode=require".to_string(),
            format!("sslmode=require&sslrootcert={}", ca.display()),
            format!("sslmode=verify-ca&sslrootcert={}", ca.display()),
            format!("sslmode=verify-full&sslrootcert={}", ca.display()),
        ] {
            let mut settings = settings(&with_param(&db.url, &mode));
            settings.password = Some(crate::config::Secret::new("pw-never-shown"));
            let refused = Store::open_postgres(&settings)
                .err()
                .unwrap_or_else(|| panic!("{mode}: connected without TLS"));
            let message = refused.to_string();
            assert!(message.starts_with("store postgres://"), "{mode}: {message}");
            assert!(
                message.contains("server does not support TLS"),
                "{mode}: {message}"
            );
            assert!(!message.contains("pw-never-shown"), "{message}");
            assert!(!format!("{refused:?}").contains("pw-never-shown"), "{refused:?}");
        }
    }

    #[test]
    fn an_unusable_sslrootcert_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for (file, fragment) in [(&missing, "No such file"), (&empty, "no certificate in the file")] {
            let url = format!(
                "postgres://u:pw-never-shown@127.0.0.1:1/db?sslmode=verify-full&sslrootcert={}",
                file.display()
            );
            let refused = Store::open_postgres(&settings(&url)).err().expect("refused");
            let message = refused.to_string();
            assert!(matches!(refused, StoreError::PostgresTls(_)), "{refused:?}");
            assert!(message.contains(&file.display().to_string()), "{message}");
            assert!(message.contains(fragment), "{message}");
            assert!(!message.contains("pw-never-shown"), "{message}");
        }
    }

    /// A self-signed CA certificate (ISRG Root X1, Let's Encrypt's root).
    const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIFazCCA1OgAwIBAgIRAIIQz7DSQONZRGPgu2OCiwAwDQYJKoZIhvcNAQELBQAw
TzELMAkGA1UEBhMCVVMxKTAnBgNVBAoTIEludGVybmV0IFNlY3VyaXR5IFJlc2Vh
cmNoIEdyb3VwMRUwEwYDVQQDEwxJU1JHIFJvb3QgWDEwHhcNMTUwNjA0MTEwNDM4
WhcNMzUwNjA0MTEwNDM4WjBPMQswCQYDVQQGEwJVUzEpMCcGA1UEChMgSW50ZXJu
ZXQgU2VjdXJpdHkgUmVzZWFyY2ggR3JvdXAxFTATBgNVBAMTDElTUkcgUm9vdCBY
MTCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAK3oJHP0FDfzm54rVygc
h77ct984kIxuPOZXoHj3dcKi/vVqbvYATyjb3miGbESTtrFj/RQSa78f0uoxmyF+
0TM8ukj13Xnfs7j/EvEhmkvBioZxaUpmZmyPfjxwv60pIgbz5MDmgK7iS4+3mX6U
A5/TR5d8mUgjU+g4rk8Kb4Mu0UlXjIB0ttov0DiNewNwIRt18jA8+o+u3dpjq+sW
T8KOEUt+zwvo/7V3LvSye0rgTBIlDHCNAymg4VMk7BPZ7hm/ELNKjD+Jo2FR3qyH
B5T0Y3HsLuJvW5iB4YlcNHlsdu87kGJ55tukmi8mxdAQ4Q7e2RCOFvu396j3x+UC
B5iPNgiV5+I3lg02dZ77DnKxHZu8A/lJBdiB3QW0KtZB6awBdpUKD9jf1b0SHzUv
KBds0pjBqAlkd25HN7rOrFleaJ1/ctaJxQZBKT5ZPt0m9STJEadao0xAH0ahmbWn
OlFuhjuefXKnEgV4We0+UXgVCwOPjdAvBbI+e0ocS3MFEvzG6uBQE3xDk3SzynTn
jh8BCNAw1FtxNrQHusEwMFxIt4I7mKZ9YIqioymCzLq9gwQbooMDQaHWBfEbwrbw
qHyGO0aoSCqI3Haadr8faqU9GY/rOPNk3sgrDQoo//fb4hVC1CLQJ13hef4Y53CI
rU7m2Ys6xt0nUW7/vGT1M0NPAgMBAAGjQjBAMA4GA1UdDwEB/wQEAwIBBjAPBgNV
HRMBAf8EBTADAQH/MB0GA1UdDgQWBBR5tFnme7bl5AFzgAiIyBpY9umbbjANBgkq
hkiG9w0BAQsFAAOCAgEAVR9YqbyyqFDQDLHYGmkgJykIrGF1XIpu+ILlaS/V9lZL
ubhzEFnTIZd+50xx+7LSYK05qAvqFyFWhfFQDlnrzuBZ6brJFe+GnY+EgPbk6ZGQ
3BebYhtF8GaV0nxvwuo77x/Py9auJ/GpsMiu/X1+mvoiBOv/2X/qkSsisRcOj/KK
NFtY2PwByVS5uCbMiogziUwthDyC3+6WVwW6LLv3xLfHTjuCvjHIInNzktHCgKQ5
ORAzI4JMPJ+GslWYHb4phowim57iaztXOoJwTdwJx4nLCgdNbOhdjsnvzqvHu7Ur
TkXWStAmzOVyyghqpZXjFaH3pO3JLF+l+/+sKAIuvtd7u+Nxe5AW0wdeRlN8NwdC
jNPElpzVmbUq4JUagEiuTDkHzsxHpFKVK7q4+63SM1N95R1NbdWhscdCb+ZAJzVc
oyi3B43njTOQ5yOf+1CceWxG1bQVs5ZufpsMljq4Ui0/1lvh+wjChP4kqKOJ2qxq
4RgqsahDYVvTH9w7jXbyLeiNdd8XM2w9U/t7y0Ff/9yi0GE44Za4rF2LN9d11TPA
mRGunUHBcnWEvgJBQl9nJEiU0Zsnvgc/ubhPgXRR4Xq37Z0j4r7g1SgEEzwxA57d
emyPxgcYxn/eR44/KJ4EBs+lVDR3veyJm+kXQ99b21/+jh5Xos1AnX5iItreGCc=
-----END CERTIFICATE-----
";
}

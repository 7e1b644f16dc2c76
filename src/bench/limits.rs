//! The physical limits the figures are compared with, measured in the same
//! run on the same machine: ECDSA verifications per second on every core,
//! fsync'd SQLite commits per second, PostgreSQL commits and round trips
//! per second on one connection, the raw ZMQ receive rate.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{ecdsa, Message, PublicKey, Secp256k1, SecretKey};

/// Verifications per second with one thread per core
/// (`available_parallelism`), each verifying pre-made signatures over
/// distinct messages with distinct keys for `duration`.
pub fn ecdsa_verifications_per_sec(duration: Duration) -> f64 {
    let secp = Secp256k1::new();
    let samples: Vec<(Message, ecdsa::Signature, PublicKey)> = (0..256u32)
        .map(|i| {
            let secret = SecretKey::from_slice(
                &sha256::Hash::hash(format!("dogetower-bench-verify-key-{i}").as_bytes()).to_byte_array(),
            )
            .expect("a hash is a valid key with overwhelming probability");
            let msg = Message::from_digest(
                sha256::Hash::hash(format!("dogetower-bench-verify-msg-{i}").as_bytes()).to_byte_array(),
            );
            (msg, secp.sign_ecdsa(&msg, &secret), secret.public_key(&secp))
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (samples, total, secp) = (&samples, &total, &secp);
            scope.spawn(move || {
                let mut done = 0u64;
                let mut i = t * 31;
                while started.elapsed() < duration {
                    for _ in 0..64 {
                        let (msg, sig, key) = &samples[i % samples.len()];
                        secp.verify_ecdsa(msg, sig, key).expect("a valid signature");
                        i += 1;
                        done += 1;
                    }
                }
                total.fetch_add(done, Ordering::Relaxed);
            });
        }
    });
    total.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Commits per second of transactions that insert `rows` rows of
/// `row_bytes` each, into a new SQLite file in `dir` with the store's
/// settings (WAL, `synchronous=FULL`), for `duration`. The file is removed.
pub fn sqlite_commits_per_sec(
    dir: &Path,
    rows: usize,
    row_bytes: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let path = dir.join(format!("fsync-probe-{}.sqlite", std::process::id()));
    let outcome = (|| -> anyhow::Result<f64> {
        let mut conn = rusqlite::Connection::open(&path).context("opening the fsync probe")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE probe (channel_id INTEGER NOT NULL, sequence INTEGER NOT NULL, psbt BLOB NOT NULL,
                 merchant_amount INTEGER NOT NULL, received_at INTEGER NOT NULL, PRIMARY KEY (channel_id, sequence))",
        )?;
        let blob = vec![0x5au8; row_bytes];
        let (mut commits, mut sequence) = (0u64, 0i64);
        let started = Instant::now();
        while started.elapsed() < duration {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO probe (channel_id, sequence, psbt, merchant_amount, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for row in 0..rows as i64 {
                    insert.execute(rusqlite::params![row, sequence, blob, row * 1000, sequence])?;
                }
            }
            tx.commit()?;
            commits += 1;
            sequence += 1;
        }
        Ok(commits as f64 / started.elapsed().as_secs_f64())
    })();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    outcome
}

/// What one synchronous PostgreSQL connection, as the store holds it
/// (`store::sql::PgConn`: each statement a round trip, waited for on the
/// calling thread), can do against the server of `--store-url`.
pub struct PostgresProbe {
    /// Commits per second of transactions inserting `rows` rows of
    /// `row_bytes` each, one `INSERT` per row (as the store writes a group).
    pub commits_per_sec: f64,
    /// `SELECT 1` answered per second, one after the other.
    pub round_trips_per_sec: f64,
    /// The server's `fsync` and `synchronous_commit`: whether a commit
    /// waits for the disk there.
    pub fsync: String,
    pub synchronous_commit: String,
}

/// Measures [`PostgresProbe`] in a database made for it on the server
/// `server_url` names (dropped afterwards), for `duration` each.
pub fn postgres_probe(
    server_url: &str,
    rows: usize,
    row_bytes: usize,
    duration: Duration,
) -> anyhow::Result<PostgresProbe> {
    use crate::store::sql::{params, PgConn};
    let db = crate::store::scratch_db::ScratchDb::create(server_url, "dogetower_bench")?;
    let settings = crate::config::PostgresConfig::from_url(&db.url, Path::new("/"))
        .map_err(|e| anyhow::anyhow!("--store-url: {e}"))?;
    let (config, tls) = crate::store::postgres::connect_settings(&settings)?;
    let conn = PgConn::connect(config, tls).context("connecting to the probe database")?;
    conn.batch(
        "CREATE TABLE probe (channel_id BIGINT NOT NULL, sequence BIGINT NOT NULL, psbt BYTEA NOT NULL,
             merchant_amount BIGINT NOT NULL, received_at BIGINT NOT NULL, PRIMARY KEY (channel_id, sequence))",
    )?;
    let show = |name: &str| -> anyhow::Result<String> {
        Ok(conn.query(&format!("SELECT current_setting('{name}')"), &[])?[0].try_get(0)?)
    };
    let (fsync, synchronous_commit) = (show("fsync")?, show("synchronous_commit")?);
    let blob = vec![0x5au8; row_bytes];
    let (mut commits, mut sequence) = (0u64, 0i64);
    let started = Instant::now();
    while started.elapsed() < duration {
        conn.begin("BEGIN")?;
        for row in 0..rows as i64 {
            conn.execute(
                "INSERT INTO probe (channel_id, sequence, psbt, merchant_amount, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![row, sequence, &blob[..], row * 1000, sequence],
            )?;
        }
        conn.end(true)?;
        commits += 1;
        sequence += 1;
    }
    let commits_per_sec = commits as f64 / started.elapsed().as_secs_f64();
    let mut round_trips = 0u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        conn.query("SELECT 1", &[])?;
        round_trips += 1;
    }
    let round_trips_per_sec = round_trips as f64 / started.elapsed().as_secs_f64();
    drop(conn);
    db.drop_database()?;
    Ok(PostgresProbe {
        commits_per_sec,
        round_trips_per_sec,
        fsync,
        synchronous_commit,
    })
}

/// A PUB socket on loopback that publishes `rawtx` messages as dogecoind
/// does (topic, body, 4-byte little-endian counter), with no send
/// high-water mark so that nothing is dropped when the reader is slower.
pub struct Publisher {
    socket: zmq::Socket,
    _context: zmq::Context,
    pub endpoint: String,
    seq: u32,
}

impl Publisher {
    pub fn bind() -> anyhow::Result<Publisher> {
        let context = zmq::Context::new();
        let socket = context.socket(zmq::PUB)?;
        socket.set_sndhwm(0)?;
        socket.set_linger(0)?;
        socket.bind("tcp://127.0.0.1:*")?;
        let endpoint = socket
            .get_last_endpoint()?
            .map_err(|_| anyhow::anyhow!("ZMQ endpoint is not UTF-8"))?;
        Ok(Publisher {
            socket,
            _context: context,
            endpoint,
            seq: 0,
        })
    }

    pub fn send(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let seq = self.seq.to_le_bytes();
        self.socket.send_multipart([&b"rawtx"[..], body, &seq[..]], 0)?;
        self.seq = self.seq.wrapping_add(1);
        Ok(())
    }
}

/// Publishes `count` messages from `bodies` (cycling) to whatever reader
/// `consume` runs, once the reader has shown it is connected; returns the
/// time from the first measured message to the reader's last one.
///
/// PUB/SUB loses whatever is published before the subscription arrives, so
/// `warmup` (a body that is not among `bodies`) is published every few
/// milliseconds until `consume` sets `ready`, which it does on its first
/// message; it must then skip the warm-up messages still coming and return
/// once it has received `count` measured ones.
pub fn publish_and_time<R: Send>(
    mut publisher: Publisher,
    warmup: &[u8],
    bodies: &[Vec<u8>],
    count: u64,
    consume: impl FnOnce(&AtomicBool) -> anyhow::Result<R> + Send,
) -> anyhow::Result<(Duration, R)> {
    let ready = AtomicBool::new(false);
    let started: Mutex<Option<Instant>> = Mutex::new(None);
    let finished: Arc<Mutex<Option<Instant>>> = Arc::default();
    let outcome = std::thread::scope(|scope| -> anyhow::Result<R> {
        let (ready, finished_reader) = (&ready, finished.clone());
        let reader = scope.spawn(move || {
            let counted = consume(ready);
            *finished_reader.lock().expect("not poisoned") = Some(Instant::now());
            counted
        });
        let wait_limit = Instant::now() + Duration::from_secs(30);
        while !ready.load(Ordering::Acquire) && Instant::now() < wait_limit && !reader.is_finished() {
            publisher.send(warmup)?;
            std::thread::sleep(Duration::from_millis(5));
        }
        *started.lock().expect("not poisoned") = Some(Instant::now());
        for i in 0..count {
            publisher.send(&bodies[(i % bodies.len() as u64) as usize])?;
        }
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("the ZMQ reader panicked"))?
    })?;
    let started = started
        .into_inner()
        .expect("not poisoned")
        .context("nothing was published")?;
    let finished = finished
        .lock()
        .expect("not poisoned")
        .context("the reader did not finish")?;
    Ok((finished.duration_since(started), outcome))
}

/// The raw ZMQ receive rate on loopback: a bare SUB socket (with the tower
/// subscriber's receive high-water mark) that only counts whole messages.
pub fn zmq_receive_rate(warmup: &[u8], bodies: &[Vec<u8>], count: u64) -> anyhow::Result<f64> {
    let publisher = Publisher::bind()?;
    let endpoint = publisher.endpoint.clone();
    let context = zmq::Context::new();
    let socket = context.socket(zmq::SUB)?;
    socket.set_rcvhwm(100_000)?;
    socket.set_linger(0)?;
    socket.set_rcvtimeo(30_000)?;
    socket.connect(&endpoint)?;
    socket.set_subscribe(b"rawtx")?;
    let (took, received) = publish_and_time(publisher, warmup, bodies, count, move |ready| {
        let mut seen = 0u64;
        while seen < count {
            let frames = socket.recv_multipart(0).context("raw ZMQ receive timed out")?;
            ready.store(true, Ordering::Release);
            if frames.len() == 3 && frames[1] != warmup {
                seen += 1;
            }
        }
        Ok(seen)
    })?;
    anyhow::ensure!(received == count, "received {received} of {count}");
    Ok(count as f64 / took.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_measure_something() {
        assert!(ecdsa_verifications_per_sec(Duration::from_millis(50)) > 0.0);
        let dir = std::env::temp_dir();
        assert!(sqlite_commits_per_sec(&dir, 4, 100, Duration::from_millis(50)).unwrap() > 0.0);
        let bodies = vec![vec![1u8; 200], vec![2u8; 300]];
        assert!(zmq_receive_rate(&[3u8; 100], &bodies, 1000).unwrap() > 0.0);
    }
}

//! Test databases: one private PostgreSQL per test process (or `DIALTONE_TEST_DATABASE_URL`), one migrated
//! template database, and a fresh copy of it per test.

use std::sync::OnceLock;

use dialtone::db::cluster::LocalCluster;

struct Server {
    admin_url: String,
    template: String,
    _cluster: Option<LocalCluster>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        // Runs on its own thread with its own runtime: the connections made here must not belong to
        // whichever test's runtime happened to come first.
        std::thread::spawn(|| {
            let (admin_url, cluster) = match std::env::var("DIALTONE_TEST_DATABASE_URL") {
                Ok(url) if !url.is_empty() => (url, None),
                _ => {
                    let dir =
                        std::env::temp_dir().join(format!("dialtone-test-{}", std::process::id()));
                    let cluster = LocalCluster::start_ephemeral(&dir)
                        .expect("start a private PostgreSQL for the tests");
                    (cluster.connection_string("postgres"), Some(cluster))
                }
            };
            let template = format!("dialtone_tmpl_{}", dialtone::db::migrate::fingerprint());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(build_template(&admin_url, &template));
            Server {
                admin_url,
                template,
                _cluster: cluster,
            }
        })
        .join()
        .expect("test database setup")
    })
}

async fn connect(url: &str) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, conn) = dialtone::db::parse_config(url)
        .unwrap()
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (client, task)
}

fn with_db(admin_url: &str, db: &str) -> String {
    let mut parts: Vec<String> = admin_url
        .split_whitespace()
        .filter(|p| !p.starts_with("dbname="))
        .map(str::to_owned)
        .collect();
    if parts.len() == 1 && admin_url.contains("://") {
        // URL form: replace the path.
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("a URL with a database path");
        return format!("{base}/{db}");
    }
    parts.push(format!("dbname={db}"));
    parts.join(" ")
}

async fn build_template(admin_url: &str, template: &str) {
    let (client, task) = connect(admin_url).await;
    client
        .execute("SELECT pg_advisory_lock(4242)", &[])
        .await
        .unwrap();
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
        .await
        .unwrap()
        .is_some();
    if !exists {
        let building = format!("{template}_building");
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {building}"))
            .await
            .unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {building}"))
            .await
            .unwrap();
        dialtone::db::migrate(&with_db(admin_url, &building))
            .await
            .expect("migrate the template");
        client
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
            .await
            .unwrap();
        client
            .batch_execute(&format!("ALTER DATABASE {template} IS_TEMPLATE true"))
            .await
            .unwrap();
    }
    client
        .execute("SELECT pg_advisory_unlock(4242)", &[])
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
}

/// A new, migrated, empty database; returns its connection string.
pub async fn fresh() -> String {
    let s = server();
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let (client, task) = connect(&s.admin_url).await;
    client
        .batch_execute(&format!(
            "CREATE DATABASE {name} TEMPLATE {} STRATEGY FILE_COPY",
            s.template
        ))
        .await
        .expect("create a test database");
    drop(client);
    let _ = task.await;
    with_db(&s.admin_url, &name)
}

/// Runs `sql` (one or more statements) on the test server's admin database: for tests that act on a
/// test database from outside (e.g. make it unreachable).
pub async fn admin_execute(sql: &str) {
    let s = server();
    let (client, task) = connect(&s.admin_url).await;
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = task.await;
}

/// The database name of a connection string made by [`fresh`] (key-value or URL form).
pub fn db_name(url: &str) -> String {
    if let Some(part) = url
        .split_whitespace()
        .find_map(|p| p.strip_prefix("dbname="))
    {
        return part.to_owned();
    }
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit_once('/')
        .map(|(_, db)| db.to_owned())
        .expect("a connection string with a database name")
}

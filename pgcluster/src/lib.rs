//! A private PostgreSQL cluster run by the portal itself.
//!
//! This crate is development and test tooling, kept out of the production library `portal`: only
//! the `portal` binary (`src/main.rs`) and the integration test harness use it, and it depends on
//! nothing of the portal's.
//!
//! When `DATABASE_URL` is not set, `portal serve` keeps a durable cluster under its data dir, and
//! the test harness starts one throwaway ("ephemeral") cluster per test run. A cluster directory
//! holds:
//!
//! ```text
//! data/          the PostgreSQL data directory (initdb)
//! postgres.log   the server log (pg_ctl -l)
//! port           durable clusters: the TCP port to reuse on the next start
//! owner.pid      ephemeral clusters: the process owning the cluster (see `sweep_stale`)
//! ```
//!
//! As root, the PostgreSQL binaries run as the `postgres` system user. If that user cannot reach
//! the requested directory, the cluster lives in `/var/lib/portal-pg/<hash>` instead; `owner.pid`
//! always stays in the requested directory.
//!
//! Authentication is `trust`. That is acceptable because the server listens only on 127.0.0.1
//! and on a Unix socket in a directory (mode 0700) that only the cluster's user can enter: no
//! remote access. Other local users can still reach the loopback port, so on a shared host set
//! `DATABASE_URL` to a properly secured server instead.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, Uid};
use sha2::{Digest, Sha256};
use tokio::process::Command;
use tracing::{debug, info, warn};

/// Debian installs each major version's binaries in `/usr/lib/postgresql/<version>/bin`.
const PG_ROOT: &str = "/usr/lib/postgresql";
/// Every binary this crate runs; all come with the Debian package `postgresql`.
const TOOLS: [&str; 6] = ["initdb", "pg_ctl", "postgres", "pg_isready", "psql", "createdb"];
/// Where root keeps clusters that the `postgres` user could not reach at the requested place.
const RELOCATION_ROOT: &str = "/var/lib/portal-pg";
/// The cluster's superuser and, as root, the system user the binaries run as.
const SUPERUSER: &str = "postgres";
/// How long to wait for an already running postmaster to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times to start the server when its port gets taken between choosing it and binding it.
const START_ATTEMPTS: u32 = 3;
/// How many lines of `postgres.log` go into start errors.
const LOG_TAIL_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL is not installed (no initdb, pg_ctl and postgres under \
         /usr/lib/postgresql/<version>/bin) and only root can install it: install the Debian \
         package `postgresql` or set DATABASE_URL to use an existing server"
    )]
    NotInstalled,
    #[error(
        "installing the Debian package `postgresql` did not provide initdb, pg_ctl and postgres \
         under /usr/lib/postgresql/<version>/bin: install it by hand or set DATABASE_URL"
    )]
    InstallIncomplete,
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed { command: String, status: ExitStatus, output: String },
    #[error(
        "PostgreSQL did not start: `{command}` failed ({status}): {output}\n\
         last lines of {log}:\n{log_tail}"
    )]
    StartFailed { command: String, status: ExitStatus, output: String, log: PathBuf, log_tail: String },
    #[error(
        "the PostgreSQL server of {data} did not accept connections on {socket_dir} port {port} \
         within 30 s (if no server is running there, remove the stale {data}/postmaster.pid)\n\
         last lines of {log}:\n{log_tail}"
    )]
    NotReady { data: PathBuf, socket_dir: PathBuf, port: u16, log: PathBuf, log_tail: String },
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing to use {path}: {reason}")]
    UnsafeDirectory { path: PathBuf, reason: &'static str },
    #[error("no free TCP port on 127.0.0.1: {0}")]
    NoFreePort(#[source] io::Error),
    #[error(
        "invalid database name {0:?}: use 1 to 63 lowercase letters, digits and underscores, \
         not starting with a digit"
    )]
    InvalidDatabaseName(String),
    #[error("unexpected {what}: {found:?}")]
    Unexpected { what: &'static str, found: String },
}

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Requested cluster directory, e.g. `<data_dir>/postgres`.
    pub dir: PathBuf,
    /// Test clusters: fsync off, immediate stop, deleted on stop, and a watchdog that cleans up
    /// after the owning process even if it dies without stopping the cluster.
    pub ephemeral: bool,
}

#[derive(Debug)]
pub struct Cluster {
    pg: Pg,
    /// Where the cluster actually lives (the requested directory unless relocated).
    dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    throwaway: Option<Throwaway>,
}

/// Clean-up state of an ephemeral cluster.
#[derive(Debug)]
struct Throwaway {
    /// Deleted on stop: the cluster dir, the requested dir if relocated, a separate socket dir.
    remove: Vec<PathBuf>,
    /// Process group of the watchdog, killed once a clean stop leaves it nothing to do.
    watchdog: Option<i32>,
}

impl Cluster {
    /// Ensures binaries exist (installing if needed), initialises the cluster on first run, and
    /// starts it, or reuses it if its postmaster is already running. Returns once the server
    /// accepts connections.
    pub async fn start(opts: ClusterOptions) -> Result<Cluster, ClusterError> {
        let pg = Pg::prepare().await?;
        tokio::fs::create_dir_all(&opts.dir).await.map_err(io_error("create", &opts.dir))?;
        let requested = tokio::fs::canonicalize(&opts.dir).await.map_err(io_error("resolve", &opts.dir))?;
        if opts.ephemeral {
            if requested.parent().is_none() {
                return Err(ClusterError::UnsafeDirectory {
                    path: requested,
                    reason: "a throwaway cluster's directory is deleted when it stops",
                });
            }
            let owner_file = requested.join("owner.pid");
            tokio::fs::write(&owner_file, format!("{}\n", std::process::id()))
                .await
                .map_err(io_error("write", &owner_file))?;
        }

        let dir = pg.placement(&requested).await?;
        let data = dir.join("data");
        let socket_dir = socket_dir_for(&dir);

        // Armed before anything slow happens, so even a start that fails half-way is cleaned up.
        let throwaway = if opts.ephemeral {
            let mut remove = vec![dir.clone()];
            if requested != dir {
                remove.push(requested.clone());
            }
            if socket_dir != dir {
                remove.push(socket_dir.clone());
            }
            let watchdog = spawn_watchdog(std::process::id(), &pg, &data, &remove)?;
            Some(Throwaway { remove, watchdog })
        } else {
            None
        };

        if let Some(running) = running_postmaster(&data).await {
            info!(
                dir = %dir.display(),
                pid = running.pid,
                port = running.port,
                "PostgreSQL is already running; reusing it"
            );
            pg.wait_ready(&dir, &running.socket_dir, running.port).await?;
            return Ok(Cluster { pg, dir, socket_dir: running.socket_dir, port: running.port, throwaway });
        }

        if socket_dir != dir {
            pg.prepare_socket_dir(&socket_dir).await?;
        }
        let remember_port = !opts.ephemeral;
        let mut port = choose_port(&dir, remember_port).await?;
        pg.take_ownership(&dir).await?;
        let version_file = data.join("PG_VERSION");
        let initialised = tokio::fs::try_exists(&version_file).await.map_err(io_error("inspect", &version_file))?;
        if !initialised {
            pg.initdb(&data, opts.ephemeral).await?;
        }

        let mut attempt = 1;
        while let Err(error) = pg.start_server(&dir, port, &socket_dir, opts.ephemeral).await {
            // Retry only if someone else bound the port between our check and the postmaster.
            let port_stolen = !port_is_free(port).await && running_postmaster(&data).await.is_none();
            if attempt >= START_ATTEMPTS || !port_stolen {
                return Err(error);
            }
            warn!(port, "the chosen port was taken while PostgreSQL started; retrying");
            port = new_port(&dir, remember_port).await?;
            attempt += 1;
        }
        info!(
            dir = %dir.display(),
            socket_dir = %socket_dir.display(),
            port,
            "PostgreSQL is ready"
        );
        Ok(Cluster { pg, dir, socket_dir, port, throwaway })
    }

    /// libpq-style key/value connection string for the superuser.
    pub fn connection_string(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={SUPERUSER} dbname={}",
            conninfo_value(&self.socket_dir.to_string_lossy()),
            self.port,
            conninfo_value(dbname)
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates the database if it does not exist.
    pub async fn ensure_database(&self, name: &str) -> Result<(), ClusterError> {
        if !is_valid_database_name(name) {
            return Err(ClusterError::InvalidDatabaseName(name.to_owned()));
        }
        if self.database_exists(name).await? {
            return Ok(());
        }
        info!(database = name, "creating database");
        match self.client("createdb").arg(name).run().await {
            Ok(_) => Ok(()),
            // Another process may have created it between our check and createdb.
            Err(error) => {
                if self.database_exists(name).await? {
                    Ok(())
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Stops the cluster (fast for durable, immediate for ephemeral) and, for ephemeral
    /// clusters, deletes its directory.
    pub async fn stop(self) -> Result<(), ClusterError> {
        let mode = if self.throwaway.is_some() { "immediate" } else { "fast" };
        info!(dir = %self.dir.display(), mode, "stopping PostgreSQL");
        self.pg.tool("pg_ctl").arg("-D").arg(self.dir.join("data")).args(["-m", mode, "-w", "stop"]).run().await?;
        // On any error above or below the watchdog stays armed and cleans up when we exit.
        if let Some(throwaway) = self.throwaway {
            for dir in &throwaway.remove {
                remove_dir(dir).await?;
            }
            if let Some(group) = throwaway.watchdog
                && let Err(error) = killpg(Pid::from_raw(group), Signal::SIGTERM)
            {
                debug!(group, %error, "could not stop the cluster watchdog");
            }
            info!(dir = %self.dir.display(), "removed throwaway PostgreSQL cluster");
        }
        Ok(())
    }

    /// A client tool (psql, createdb) aimed at this cluster as the superuser.
    fn client(&self, tool: &str) -> Cmd {
        self.pg
            .tool(tool)
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-w"])
    }

    async fn database_exists(&self, name: &str) -> Result<bool, ClusterError> {
        // `name` has been validated, so it is safe inside the literal.
        let query = format!("SELECT 1 FROM pg_database WHERE datname = '{name}'");
        let found = self.client("psql").args(["-X", "-d", "postgres", "-tAc"]).arg(query).run().await?;
        Ok(found.trim() == "1")
    }
}

/// Removes ephemeral clusters under `parent` whose owning process is dead (crashed test runs
/// whose watchdog did not get to clean up either).
pub async fn sweep_stale(parent: &Path) {
    let mut entries = match tokio::fs::read_dir(parent).await {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return,
        Err(error) => {
            warn!(parent = %parent.display(), %error, "cannot look for stale PostgreSQL clusters");
            return;
        }
    };
    loop {
        let entry = match entries.next_entry().await {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(error) => {
                warn!(parent = %parent.display(), %error, "cannot look for stale PostgreSQL clusters");
                break;
            }
        };
        let requested = entry.path();
        let Some(owner) = read_pid_file(&requested.join("owner.pid")).await else {
            continue;
        };
        if process_alive(owner) {
            continue;
        }
        info!(dir = %requested.display(), owner, "removing PostgreSQL cluster of a dead process");
        if let Err(error) = remove_stale(&requested).await {
            warn!(dir = %requested.display(), %error, "could not remove stale PostgreSQL cluster");
        }
    }
}

async fn remove_stale(requested: &Path) -> Result<(), ClusterError> {
    let requested = tokio::fs::canonicalize(requested).await.map_err(io_error("resolve", requested))?;
    let mut cluster_dirs = vec![requested.clone()];
    let relocated = relocated_dir(&requested);
    if tokio::fs::try_exists(&relocated).await.unwrap_or(false) {
        cluster_dirs.push(relocated);
    }
    let mut remove = Vec::new();
    for dir in cluster_dirs {
        if let Some(postmaster) = running_postmaster(&dir.join("data")).await {
            // SIGQUIT is what `pg_ctl -m immediate stop` sends; no binaries needed.
            if let Err(error) = kill(Pid::from_raw(postmaster.pid), Signal::SIGQUIT) {
                warn!(pid = postmaster.pid, %error, "could not stop stale postmaster");
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while process_alive(postmaster.pid) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let socket_dir = socket_dir_for(&dir);
        if socket_dir != dir {
            remove.push(socket_dir);
        }
        remove.push(dir);
    }
    for dir in &remove {
        remove_dir(dir).await?;
    }
    Ok(())
}

/// Where and as whom the PostgreSQL binaries run.
#[derive(Debug, Clone)]
struct Pg {
    bin: PathBuf,
    /// uid of the `postgres` user when we are root: initdb and postgres refuse to run as root.
    run_as: Option<u32>,
}

impl Pg {
    /// Finds (or installs) the binaries and, as root, makes sure the `postgres` user exists.
    async fn prepare() -> Result<Pg, ClusterError> {
        // Tests start clusters concurrently; only one of them should run apt-get or useradd.
        static HOST_SETUP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _setup = HOST_SETUP.lock().await;
        let root = Uid::effective().is_root();
        let bin = match find_binaries().await {
            Some(bin) => bin,
            None if root => install().await?,
            None => return Err(ClusterError::NotInstalled),
        };
        let run_as = if root { Some(postgres_user().await?) } else { None };
        debug!(bin = %bin.display(), ?run_as, "using PostgreSQL binaries");
        Ok(Pg { bin, run_as })
    }

    /// `program` run as the cluster's user.
    fn as_cluster_user(&self, program: impl AsRef<OsStr>) -> Cmd {
        if self.run_as.is_some() {
            Cmd::new("runuser").args(["-u", SUPERUSER, "--"]).arg(program)
        } else {
            Cmd::new(program)
        }
    }

    /// A PostgreSQL binary run as the cluster's user.
    fn tool(&self, name: &str) -> Cmd {
        self.as_cluster_user(self.bin.join(name))
    }

    /// Where the cluster for `requested` lives: `requested` itself, unless we are root and the
    /// `postgres` user cannot traverse its parents (e.g. under a mode 0700 /root).
    async fn placement(&self, requested: &Path) -> Result<PathBuf, ClusterError> {
        if self.run_as.is_none() {
            return Ok(requested.to_path_buf());
        }
        let parent = requested.parent().unwrap_or(requested);
        let reachable = self.as_cluster_user("test").arg("-x").arg(parent).output().await?.status.success();
        if reachable {
            return Ok(requested.to_path_buf());
        }
        let dir = relocated_dir(requested);
        info!(
            requested = %requested.display(),
            dir = %dir.display(),
            "the postgres user cannot reach the requested directory; keeping the cluster here instead"
        );
        let root = Path::new(RELOCATION_ROOT);
        tokio::fs::create_dir_all(root).await.map_err(io_error("create", root))?;
        // Traversable by the postgres user whatever root's umask.
        set_mode(root, 0o755).await?;
        tokio::fs::create_dir_all(&dir).await.map_err(io_error("create", &dir))?;
        Ok(dir)
    }

    /// Creates the separate socket directory, private to the cluster's user.
    async fn prepare_socket_dir(&self, path: &Path) -> Result<(), ClusterError> {
        match tokio::fs::DirBuilder::new().mode(0o700).create(path).await {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(io_error("create", path)(error)),
        }
        // The name is predictable, so another user could have created it first.
        let metadata = tokio::fs::symlink_metadata(path).await.map_err(io_error("inspect", path))?;
        let me = Uid::effective().as_raw();
        let owner = self.run_as.unwrap_or(me);
        if !metadata.is_dir() || (metadata.uid() != me && metadata.uid() != owner) {
            return Err(ClusterError::UnsafeDirectory {
                path: path.to_path_buf(),
                reason: "the socket directory already exists and belongs to someone else",
            });
        }
        if self.run_as.is_some() {
            Cmd::new("chown").arg(format!("{SUPERUSER}:{SUPERUSER}")).arg(path).run().await?;
        }
        set_mode(path, 0o700).await
    }

    /// Hands the cluster directory to the cluster's user and makes it private (the socket may
    /// live in it).
    async fn take_ownership(&self, dir: &Path) -> Result<(), ClusterError> {
        if self.run_as.is_some() {
            Cmd::new("chown").args(["-R", &format!("{SUPERUSER}:{SUPERUSER}")]).arg(dir).run().await?;
        }
        set_mode(dir, 0o700).await
    }

    async fn initdb(&self, data: &Path, ephemeral: bool) -> Result<(), ClusterError> {
        info!(data = %data.display(), "initialising PostgreSQL cluster");
        // Trust auth: see the module documentation for why that is acceptable.
        let mut initdb = self.tool("initdb").arg("-D").arg(data).args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        if ephemeral {
            initdb = initdb.arg("--no-sync");
        }
        initdb.run().await.map(drop)
    }

    async fn start_server(
        &self,
        dir: &Path,
        port: u16,
        socket_dir: &Path,
        ephemeral: bool,
    ) -> Result<(), ClusterError> {
        let log = dir.join("postgres.log");
        // pg_ctl hands these to postgres through `sh -c`, hence the quoting.
        let mut options = OsString::from(format!("-p {port} -k "));
        options.push(shell_quote(socket_dir.as_os_str()));
        options.push(" -c listen_addresses=127.0.0.1 -c max_connections=200");
        if ephemeral {
            options.push(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let pg_ctl = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o"])
            .arg(options)
            .arg("start");
        info!(dir = %dir.display(), port, "starting PostgreSQL");
        match pg_ctl.run().await {
            Ok(_) => Ok(()),
            Err(ClusterError::CommandFailed { command, status, output }) => {
                Err(ClusterError::StartFailed { command, status, output, log_tail: log_tail(&log).await, log })
            }
            Err(error) => Err(error),
        }
    }

    /// Polls `pg_isready` until the server accepts connections.
    async fn wait_ready(&self, dir: &Path, socket_dir: &Path, port: u16) -> Result<(), ClusterError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let pg_isready =
            self.tool("pg_isready").arg("-h").arg(socket_dir).arg("-p").arg(port.to_string()).args(["-t", "1"]);
        loop {
            let output = pg_isready.output().await?;
            match output.status.code() {
                Some(0) => return Ok(()),
                // 1: rejecting connections (starting up), 2: no response; anything else is a
                // usage error that waiting will not fix.
                Some(1 | 2) => {}
                _ => {
                    return Err(ClusterError::CommandFailed {
                        command: pg_isready.display(),
                        status: output.status,
                        output: failure_text(&output),
                    });
                }
            }
            if Instant::now() >= deadline {
                let log = dir.join("postgres.log");
                return Err(ClusterError::NotReady {
                    data: dir.join("data"),
                    socket_dir: socket_dir.to_path_buf(),
                    port,
                    log_tail: log_tail(&log).await,
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The highest `/usr/lib/postgresql/<version>/bin` that has every tool we run.
async fn find_binaries() -> Option<PathBuf> {
    let mut entries = tokio::fs::read_dir(PG_ROOT).await.ok()?;
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name();
        let Some(version) = parse_version(&name.to_string_lossy()) else {
            continue;
        };
        let bin = entry.path().join("bin");
        let mut complete = true;
        for tool in TOOLS {
            complete &= tokio::fs::try_exists(bin.join(tool)).await.unwrap_or(false);
        }
        if complete && best.as_ref().is_none_or(|(best, _)| version > *best) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, bin)| bin)
}

/// "15" → [15], "9.6" → [9, 6].
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// Installs Debian's `postgresql` package (root only).
async fn install() -> Result<PathBuf, ClusterError> {
    info!("PostgreSQL not found; installing the Debian package `postgresql`");
    Cmd::new("apt-get").arg("update").run().await?;
    Cmd::new("env")
        .args([
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            // Wait for another apt/dpkg run instead of failing on its lock.
            "-o",
            "DPkg::Lock::Timeout=300",
            "install",
            "-y",
            "postgresql",
        ])
        .run()
        .await?;
    let bin = find_binaries().await.ok_or(ClusterError::InstallIncomplete)?;
    // The package creates and starts a default cluster ("<version> main" on port 5432) that we do
    // not use. Nothing of it can have been running before, as there were no binaries; stop it.
    if let Some(version) = bin.parent().and_then(Path::file_name)
        && let Err(error) = Cmd::new("pg_ctlcluster").arg(version).args(["main", "stop"]).run().await
    {
        debug!(%error, "could not stop the package's default cluster");
    }
    info!(bin = %bin.display(), "installed PostgreSQL");
    Ok(bin)
}

/// The uid of the `postgres` system user, creating the user if needed.
async fn postgres_user() -> Result<u32, ClusterError> {
    let lookup = Cmd::new("id").args(["-u", SUPERUSER]);
    if !lookup.output().await?.status.success() {
        info!("creating the `postgres` system user");
        Cmd::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--home-dir",
                "/var/lib/postgresql",
                "--shell",
                "/usr/sbin/nologin",
                SUPERUSER,
            ])
            .run()
            .await?;
    }
    let uid = lookup.run().await?;
    uid.trim().parse().map_err(|_| ClusterError::Unexpected { what: "output of `id -u postgres`", found: uid })
}

/// The socket directory for a cluster in `cluster_dir`: the directory itself if the socket path
/// fits in a Unix socket address (~107 bytes), else a short one under /tmp. Checked with the
/// longest possible port so the choice does not depend on the port.
fn socket_dir_for(cluster_dir: &Path) -> PathBuf {
    if cluster_dir.join(".s.PGSQL.65535").as_os_str().len() < 100 {
        cluster_dir.to_path_buf()
    } else {
        PathBuf::from(format!("/tmp/portal-pg-{}", short_hash(cluster_dir)))
    }
}

fn relocated_dir(requested: &Path) -> PathBuf {
    Path::new(RELOCATION_ROOT).join(short_hash(requested))
}

/// First 16 hex digits of the SHA-256 of `path`.
fn short_hash(path: &Path) -> String {
    let digest = Sha256::digest(path.as_os_str().as_bytes());
    hex::encode(&digest[..8])
}

/// The port for the next start: for durable clusters the remembered one if it is still free,
/// else a new free one (remembered in `<dir>/port` for durable clusters).
async fn choose_port(dir: &Path, remember: bool) -> Result<u16, ClusterError> {
    if remember
        && let Ok(text) = tokio::fs::read_to_string(dir.join("port")).await
        && let Ok(port) = text.trim().parse::<u16>()
        && port != 0
    {
        // Our own postmaster was ruled out already, so a taken port is someone else's.
        if port_is_free(port).await {
            return Ok(port);
        }
        info!(port, "the remembered PostgreSQL port is taken; choosing another");
    }
    new_port(dir, remember).await
}

async fn new_port(dir: &Path, remember: bool) -> Result<u16, ClusterError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.map_err(ClusterError::NoFreePort)?;
    let port = listener.local_addr().map_err(ClusterError::NoFreePort)?.port();
    drop(listener);
    if remember {
        let file = dir.join("port");
        tokio::fs::write(&file, format!("{port}\n")).await.map_err(io_error("write", &file))?;
    }
    Ok(port)
}

async fn port_is_free(port: u16) -> bool {
    tokio::net::TcpListener::bind(("127.0.0.1", port)).await.is_ok()
}

/// What `<data>/postmaster.pid` says about a running server.
#[derive(Debug, PartialEq)]
struct Postmaster {
    pid: i32,
    port: u16,
    socket_dir: PathBuf,
}

/// Lines 1, 4 and 5 of postmaster.pid: pid, port, first socket directory.
fn parse_postmaster_pid(text: &str) -> Option<Postmaster> {
    let mut lines = text.lines();
    let pid = parse_pid(lines.next()?)?;
    let port = lines.nth(2)?.trim().parse().ok()?;
    let socket_dir = lines.next()?.trim();
    (!socket_dir.is_empty()).then(|| Postmaster { pid, port, socket_dir: PathBuf::from(socket_dir) })
}

/// The postmaster serving `data`, if one is running. Besides `kill(pid, 0)`, its command line
/// must name `data`: after a reboot or container restart a stale pid file's pid may belong to an
/// unrelated process.
async fn running_postmaster(data: &Path) -> Option<Postmaster> {
    let text = tokio::fs::read_to_string(data.join("postmaster.pid")).await.ok()?;
    let postmaster = parse_postmaster_pid(&text)?;
    if !process_alive(postmaster.pid) {
        return None;
    }
    match tokio::fs::read(format!("/proc/{}/cmdline", postmaster.pid)).await {
        Ok(cmdline) => {
            cmdline.split(|&byte| byte == 0).any(|arg| arg == data.as_os_str().as_bytes()).then_some(postmaster)
        }
        // No way to tell; go by the pid alone like pg_ctl does.
        Err(_) => Some(postmaster),
    }
}

fn parse_pid(text: &str) -> Option<i32> {
    // 0 and negative pids address process groups in kill(2).
    text.trim().parse().ok().filter(|&pid| pid > 0)
}

async fn read_pid_file(path: &Path) -> Option<i32> {
    let text = tokio::fs::read_to_string(path).await.ok()?;
    parse_pid(text.lines().next()?)
}

fn process_alive(pid: i32) -> bool {
    // EPERM: it exists but belongs to another user.
    matches!(kill(Pid::from_raw(pid), None), Ok(()) | Err(Errno::EPERM))
}

/// Starts a detached shell that, once process `owner` is gone, stops the cluster and deletes
/// `remove`: test processes get killed, and a cluster in a static never sees a destructor.
/// Returns the watchdog's process group.
fn spawn_watchdog(owner: u32, pg: &Pg, data: &Path, remove: &[PathBuf]) -> Result<Option<i32>, ClusterError> {
    let stop = pg.tool("pg_ctl").arg("-D").arg(data).args(["-m", "immediate", "-w", "stop"]);
    let mut script = OsString::from(format!("while kill -0 {owner} 2>/dev/null; do sleep 1; done\n"));
    script.push(stop.shell_line());
    script.push(" >/dev/null 2>&1\nrm -rf");
    for dir in remove {
        script.push(" ");
        script.push(shell_quote(dir.as_os_str()));
    }
    script.push("\n");
    let watchdog = Cmd::new("sh").arg("-c").arg(script);
    debug!(command = %watchdog.display(), "spawning cluster watchdog");
    let child = watchdog
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so Ctrl-C (sent to the test's group) leaves it alive.
        .process_group(0)
        .spawn()
        .map_err(|source| ClusterError::Spawn { command: watchdog.display(), source })?;
    // Deliberately not awaited: it must outlive us. Tokio reaps it should it exit first.
    Ok(child.id().and_then(|id| i32::try_from(id).ok()))
}

/// The last lines of the server log, for error messages.
async fn log_tail(log: &Path) -> String {
    // Only the end of a possibly large log is read.
    const MAX_BYTES: u64 = 16 * 1024;
    let path = log.to_path_buf();
    let read = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(&path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    })
    .await;
    match read {
        Ok(Ok(bytes)) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
            lines[skip..].join("\n")
        }
        Ok(Err(error)) => format!("(could not read the log: {error})"),
        Err(error) => format!("(could not read the log: {error})"),
    }
}

/// ^[a-z_][a-z0-9_]*$, at most 63 bytes (longer names are silently truncated by PostgreSQL).
fn is_valid_database_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    first_ok && name.len() <= 63 && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A value for a libpq key/value connection string, quoted when needed.
fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty() && !value.chars().any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain { value.to_owned() } else { format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'")) }
}

/// `word` as a single POSIX shell word.
fn shell_quote(word: &OsStr) -> OsString {
    let bytes = word.as_bytes();
    let plain = !bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@%".contains(b));
    if plain {
        return word.to_os_string();
    }
    let mut quoted = vec![b'\''];
    for &byte in bytes {
        if byte == b'\'' {
            quoted.extend_from_slice(b"'\\''");
        } else {
            quoted.push(byte);
        }
    }
    quoted.push(b'\'');
    OsString::from_vec(quoted)
}

async fn set_mode(path: &Path, mode: u32) -> Result<(), ClusterError> {
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(io_error("set permissions on", path))
}

/// Deletes a directory tree; already gone is fine.
async fn remove_dir(path: &Path) -> Result<(), ClusterError> {
    match tokio::fs::remove_dir_all(path).await {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(io_error("remove", path)(error)),
        _ => Ok(()),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ClusterError {
    let path = path.to_path_buf();
    move |source| ClusterError::Io { action, path, source }
}

/// What a failed command said: its stderr, or its stdout if stderr is empty.
fn failure_text(output: &Output) -> String {
    [&output.stderr, &output.stdout]
        .into_iter()
        .map(|bytes| String::from_utf8_lossy(bytes).trim().to_owned())
        .find(|text| !text.is_empty())
        .unwrap_or_else(|| "(no output)".to_owned())
}

/// An external command kept as argv, so that failures can show exactly what ran.
#[derive(Debug, Clone)]
struct Cmd {
    program: OsString,
    args: Vec<OsString>,
}

impl Cmd {
    fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd { program: program.as_ref().to_os_string(), args: Vec::new() }
    }

    fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    fn args<I>(self, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        args.into_iter().fold(self, Cmd::arg)
    }

    /// The command as one shell line.
    fn shell_line(&self) -> OsString {
        let mut line = shell_quote(&self.program);
        for arg in &self.args {
            line.push(" ");
            line.push(shell_quote(arg));
        }
        line
    }

    fn display(&self) -> String {
        self.shell_line().to_string_lossy().into_owned()
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            // All paths are absolute, and the postgres user may not be allowed into our cwd.
            .current_dir("/")
            .stdin(Stdio::null());
        // The caller's libpq environment (PGHOST, PGPORT, PGDATABASE, ...) must not steer these
        // commands to another server.
        for (key, _) in std::env::vars_os() {
            if key.as_bytes().starts_with(b"PG") {
                command.env_remove(key);
            }
        }
        command
    }

    async fn output(&self) -> Result<Output, ClusterError> {
        debug!(command = %self.display(), "running");
        self.command().output().await.map_err(|source| ClusterError::Spawn { command: self.display(), source })
    }

    /// Runs to completion; a non-zero exit is an error. Returns stdout.
    async fn run(&self) -> Result<String, ClusterError> {
        let output = self.output().await?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(ClusterError::CommandFailed {
                command: self.display(),
                status: output.status,
                output: failure_text(&output),
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// A fresh, not yet existing directory under /tmp.
    fn scratch_dir(tag: &str) -> PathBuf {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        PathBuf::from(format!("/tmp/portal-cluster-test-{tag}-{}-{nanos}", std::process::id()))
    }

    async fn wait_until_gone(path: &Path) -> bool {
        for _ in 0..100 {
            if !path.exists() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    #[test]
    fn database_names() {
        for good in ["portal", "portal_probe", "_x", "a1_2", &"a".repeat(63)] {
            assert!(is_valid_database_name(good), "{good}");
        }
        for bad in ["", "1abc", "Portal", "por-tal", "a b", "x'; DROP DATABASE y; --", "é", &"a".repeat(64)] {
            assert!(!is_valid_database_name(bad), "{bad}");
        }
    }

    #[test]
    fn socket_dir_is_the_cluster_dir_when_short_enough() {
        let short = Path::new("/tmp/portal-test/postgres");
        assert_eq!(socket_dir_for(short), short);

        // 89 bytes + "/.s.PGSQL.65535" (15) = 104: too long.
        let long = PathBuf::from(format!("/{}", "d".repeat(88)));
        let socket_dir = socket_dir_for(&long);
        assert_ne!(socket_dir, long);
        let name = socket_dir.to_str().unwrap();
        assert!(name.starts_with("/tmp/portal-pg-"), "{name}");
        assert_eq!(name.len(), "/tmp/portal-pg-".len() + 16);
        assert_eq!(socket_dir_for(&long), socket_dir, "deterministic");
        assert!(socket_dir.join(".s.PGSQL.65535").as_os_str().len() < 100);

        // 84 + 15 = 99 still fits.
        let edge = PathBuf::from(format!("/{}", "d".repeat(83)));
        assert_eq!(socket_dir_for(&edge), edge);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote(OsStr::new("/tmp/a-b_c.d")), "/tmp/a-b_c.d");
        assert_eq!(shell_quote(OsStr::new("a b")), "'a b'");
        assert_eq!(shell_quote(OsStr::new("it's")), r"'it'\''s'");
        assert_eq!(shell_quote(OsStr::new("")), "''");
        assert_eq!(conninfo_value("/tmp/x"), "/tmp/x");
        assert_eq!(conninfo_value(r"a b'\"), r"'a b\'\\'");
    }

    #[test]
    fn postmaster_pid_file() {
        let text = "5478\n/tmp/pgt/data\n1795537312\n54329\n/tmp/pgt\n127.0.0.1\n 10010785 4\nready   \n";
        assert_eq!(
            parse_postmaster_pid(text),
            Some(Postmaster { pid: 5478, port: 54329, socket_dir: PathBuf::from("/tmp/pgt") })
        );
        assert_eq!(parse_postmaster_pid("5478\n/tmp/pgt/data\n"), None);
        assert_eq!(parse_postmaster_pid("0\na\nb\n1\n/tmp\n"), None);
        assert_eq!(parse_version("15"), Some(vec![15]));
        assert_eq!(parse_version("9.6"), Some(vec![9, 6]));
        assert_eq!(parse_version("15-old"), None);
    }

    #[tokio::test]
    async fn ephemeral_cluster_lifecycle() {
        let dir = scratch_dir("ephemeral");
        let cluster = Cluster::start(ClusterOptions { dir: dir.clone(), ephemeral: true }).await.unwrap();
        cluster.ensure_database("portal_probe").await.unwrap();
        cluster.ensure_database("portal_probe").await.unwrap();
        assert!(matches!(cluster.ensure_database("bad-name").await, Err(ClusterError::InvalidDatabaseName(_))));

        let (client, connection) =
            tokio_postgres::connect(&cluster.connection_string("portal_probe"), tokio_postgres::NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
        drop(client);
        connection.await.unwrap().unwrap();

        cluster.stop().await.unwrap();
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn durable_cluster_keeps_its_port_and_data() {
        let dir = scratch_dir("durable");
        let opts = ClusterOptions { dir: dir.clone(), ephemeral: false };
        let first = Cluster::start(opts.clone()).await.unwrap();
        first.ensure_database("portal_keep").await.unwrap();
        let port = first.port();

        // While it runs, a second start reuses the running postmaster.
        let reused = Cluster::start(opts.clone()).await.unwrap();
        assert_eq!(reused.port(), port);
        assert_eq!(reused.socket_dir, first.socket_dir);
        reused.stop().await.unwrap();
        drop(first);

        let restarted = Cluster::start(opts).await.unwrap();
        assert_eq!(restarted.port(), port, "remembered port");
        assert!(restarted.database_exists("portal_keep").await.unwrap());
        restarted.stop().await.unwrap();
        assert!(dir.join("data/PG_VERSION").exists());
        tokio::fs::remove_dir_all(&dir).await.unwrap();
    }

    #[tokio::test]
    async fn root_relocates_clusters_the_postgres_user_cannot_reach() {
        if !Uid::effective().is_root() {
            return;
        }
        let private = scratch_dir("private");
        tokio::fs::DirBuilder::new().mode(0o700).create(&private).await.unwrap();
        let requested = private.join("pg");
        let cluster = Cluster::start(ClusterOptions { dir: requested.clone(), ephemeral: true }).await.unwrap();
        assert!(cluster.dir.starts_with(RELOCATION_ROOT), "{:?}", cluster.dir);
        let relocated = cluster.dir.clone();
        cluster.ensure_database("portal_probe").await.unwrap();
        cluster.stop().await.unwrap();
        assert!(!relocated.exists());
        assert!(!requested.exists());
        tokio::fs::remove_dir_all(&private).await.unwrap();
    }

    #[tokio::test]
    async fn watchdog_cleans_up_once_its_owner_is_gone() {
        let dir = scratch_dir("watchdog");
        tokio::fs::create_dir_all(dir.join("data")).await.unwrap();
        let mut owner = Command::new("sleep").arg("1").spawn().unwrap();
        // No binaries needed: the watchdog ignores a failing stop and still deletes.
        let pg = Pg { bin: PathBuf::from("/nonexistent"), run_as: None };
        spawn_watchdog(owner.id().unwrap(), &pg, &dir.join("data"), std::slice::from_ref(&dir)).unwrap();
        assert!(dir.exists());
        // Reaped, so that `kill -0` stops finding it.
        owner.wait().await.unwrap();
        assert!(wait_until_gone(&dir).await, "watchdog left {dir:?}");
    }

    #[tokio::test]
    async fn sweep_removes_only_clusters_of_dead_owners() {
        let parent = scratch_dir("sweep");
        let mut finished = Command::new("true").spawn().unwrap();
        let dead_pid = finished.id().unwrap();
        finished.wait().await.unwrap();

        let dead = parent.join("dead");
        let alive = parent.join("alive");
        let unowned = parent.join("unowned");
        for dir in [&dead, &alive, &unowned] {
            tokio::fs::create_dir_all(dir.join("data")).await.unwrap();
        }
        tokio::fs::write(dead.join("owner.pid"), format!("{dead_pid}\n")).await.unwrap();
        tokio::fs::write(alive.join("owner.pid"), format!("{}\n", std::process::id())).await.unwrap();

        sweep_stale(&parent).await;
        assert!(!dead.exists());
        assert!(alive.exists());
        assert!(unowned.exists());
        tokio::fs::remove_dir_all(&parent).await.unwrap();
    }
}

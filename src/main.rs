//! The `portal` command: serve the portal, migrate, load demo data, administer accounts.

use std::io::BufRead;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portal::{Application, Config, db};
use portal_pgcluster::{Cluster, ClusterOptions};
use secrecy::{ExposeSecret, SecretString};

#[derive(Parser)]
#[command(name = "portal", version, about = "Self-hosted customer portal for service businesses")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the portal (PORTAL_ADDR, default 127.0.0.1:8080). Applies migrations first.
    Serve {
        /// Load the demo customers and accounts first (idempotent).
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Load the demo data (idempotent) and exit.
    Demo,
    /// Manage customer companies.
    Customer {
        #[command(subcommand)]
        command: CustomerCommand,
    },
    /// Manage staff accounts of the business.
    Staff {
        #[command(subcommand)]
        command: StaffCommand,
    },
}

#[derive(Subcommand)]
enum CustomerCommand {
    /// Create a customer company, optionally with its first admin user.
    Create {
        #[arg(long)]
        name: String,
        /// Short identifier: lower-case letters, digits and dashes.
        #[arg(long)]
        slug: String,
        /// Email of the customer's first admin (their password is printed, or read with --password-stdin).
        #[arg(long, requires = "admin_name")]
        admin_email: Option<String>,
        #[arg(long)]
        admin_name: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum StaffCommand {
    /// Create a staff user (the password is printed, or read with --password-stdin).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Staff admins manage workflows and other staff.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("portal: {e}");
            return ExitCode::from(2);
        }
    };
    portal::telemetry::init(config.log_json);
    match run(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("portal: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyError = Box<dyn std::error::Error>;

/// The database to use: `DATABASE_URL`, or the private cluster under the data dir.
async fn open_database(config: &Config) -> Result<(String, Option<Cluster>), AnyError> {
    if let Some(url) = &config.database_url {
        return Ok((url.expose_secret().to_owned(), None));
    }
    let dir = std::path::absolute(config.data_dir.join("postgres"))?;
    let cluster = Cluster::start(ClusterOptions { dir, ephemeral: false }).await?;
    cluster.ensure_database("portal").await?;
    Ok((cluster.connection_string("portal"), Some(cluster)))
}

/// Which logins the pools use: dedicated ones wherever possible.
fn logins(config: &Config, owner_url: &str, private: bool) -> Result<db::Logins, AnyError> {
    if let (Some(web), Some(staff)) = (&config.database_web_url, &config.database_staff_url) {
        return Ok(db::Logins::from_urls(web.expose_secret(), staff.expose_secret())?);
    }
    if private {
        return Ok(db::Logins::dedicated(owner_url)?);
    }
    tracing::warn!(
        "PORTAL_DATABASE_WEB_URL and PORTAL_DATABASE_STAFF_URL are not set: the pools log in as the DATABASE_URL \
         role and switch to portal_app / portal_staff. Give the portal_web and portal_web_staff roles passwords \
         and set both variables so that SQL on a customer connection can never leave its role."
    );
    Ok(db::Logins::owner(owner_url)?)
}

async fn run(command: Command, config: Config) -> Result<(), AnyError> {
    let (url, cluster) = open_database(&config).await?;
    let result = with_database(command, &config, &url, cluster.is_some()).await;
    if let Some(cluster) = cluster {
        cluster.stop().await?;
    }
    result
}

async fn with_database(command: Command, config: &Config, url: &str, private: bool) -> Result<(), AnyError> {
    db::migrate(url).await?;
    let pool = db::Db::connect(logins(config, url, private)?, config.db_pool_size).await?;
    match command {
        Command::Migrate => println!("Migrations are up to date."),
        Command::Demo => {
            report_demo(portal::demo::load(&pool).await?);
            portal::demo::files(&pool, &portal::storage::BlobStore::open(config).await?).await?;
        }
        Command::Serve { demo } => {
            let blobs = portal::storage::BlobStore::open(config).await?;
            if demo {
                report_demo(portal::demo::load(&pool).await?);
                portal::demo::files(&pool, &blobs).await?;
            }
            let app = Application::build(config, pool, blobs)?;
            println!("Portal is running at {}  (Ctrl-C stops it)", app.origin());
            if demo {
                println!("Demo sign-ins (password {}):", portal::demo::PASSWORD);
                for (email, what) in portal::demo::ACCOUNTS {
                    println!("  {email:<24} {what}");
                }
            }
            app.run().await?;
        }
        Command::Customer {
            command: CustomerCommand::Create { name, slug, admin_email, admin_name, password_stdin },
        } => {
            let admin = match (admin_email, admin_name) {
                (Some(email), Some(name)) => Some((email, name, password(password_stdin)?)),
                _ => None,
            };
            let created = portal::accounts::admin::create_customer(
                &pool,
                &name,
                &slug,
                admin.as_ref().map(|(e, n, p)| (e.as_str(), n.as_str(), p.0.clone())),
            )
            .await?;
            println!("Created customer {name} ({slug}), id {created}.");
            if let Some((email, _, password)) = admin {
                password.announce(&email);
            }
        }
        Command::Staff { command: StaffCommand::Create { email, name, admin, password_stdin } } => {
            let password = password(password_stdin)?;
            let id = portal::accounts::admin::create_staff(&pool, &email, &name, admin, password.0.clone()).await?;
            println!("Created staff user {email}, id {id}.");
            password.announce(&email);
        }
    }
    Ok(())
}

fn report_demo(loaded: bool) {
    if loaded {
        println!("Demo data loaded.");
    } else {
        println!("Demo data already present.");
    }
}

/// A password read from stdin, or a generated one that is printed once.
struct NewPassword(SecretString, bool);

impl NewPassword {
    fn announce(&self, email: &str) {
        if self.1 {
            println!("Password for {email}: {}  (shown once; ask them to change it)", self.0.expose_secret());
        }
    }
}

fn password(from_stdin: bool) -> Result<NewPassword, AnyError> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.chars().count() < 8 {
            return Err("the password must have at least 8 characters".into());
        }
        Ok(NewPassword(SecretString::from(line), false))
    } else {
        Ok(NewPassword(SecretString::from(portal::auth::session::random_token()), true))
    }
}

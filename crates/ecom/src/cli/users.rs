//! `ecom users add --email E --password P [--group G]…`: creates an account
//! straight in the users database (the way to make the first admin). It
//! works beside a running server on the same data dir or database; the
//! `UserCreated` event waits in the outbox until a server's relay sends it.
//!
//! `ecom users keys list|rotate|retire KID`: the keys that sign ID tokens
//! (see `ecom_users::keys`).

use anyhow::Context as _;
use clap::Subcommand;
use ecom_platform::Outbox;
use ecom_runtime::Config;
use ecom_storage::{Db, StorageTarget};
use ecom_users::accounts::{self, CreateError};
use ecom_users::domain::{Email, Group, NewPassword};
use ecom_users::passwords::Gate;

/// `ecom users …`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user, e.g. the first admin, and print its id.
    Add {
        /// Email (sign-in name).
        #[arg(long)]
        email: String,
        /// Password (8+ characters of two kinds).
        #[arg(long)]
        password: String,
        /// Staff group: admin, warehouse or delivery (repeatable).
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// The keys that sign ID tokens: list, rotate, retire.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

/// `ecom users keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print every key: kid, when it was added, and which one signs.
    List,
    /// Add a key: it signs every token from now on, in every server on
    /// this database; tokens signed by the older keys stay valid. Prints its kid.
    Rotate,
    /// Remove an older key: tokens it signed stop being accepted once
    /// verifiers refresh their key set (within 5 minutes). Not the signing key.
    Retire {
        /// The key's id, as `list` prints it.
        kid: String,
    },
}

/// Runs a users command.
pub async fn run(config: &Config, command: UsersCommand) -> anyhow::Result<()> {
    let target = StorageTarget::from_url(config.database_url.as_deref(), config.data_dir.clone())?;
    match command {
        UsersCommand::Add {
            email,
            password,
            groups,
        } => {
            let user_id = add(&target, &email, &password, &groups).await?;
            println!("{user_id}");
            Ok(())
        }
        UsersCommand::Keys { command } => {
            for line in keys(&target, command).await? {
                println!("{line}");
            }
            Ok(())
        }
    }
}

/// Runs a keys command on the users database of `target` (migrating it
/// first); the lines to print.
pub async fn keys(target: &StorageTarget, command: KeysCommand) -> anyhow::Result<Vec<String>> {
    let db = Db::open(target, ecom_users::NAME).await?;
    let done = async {
        db.migrate(ecom_platform::outbox::SCOPE, ecom_platform::outbox::MIGRATIONS)
            .await?;
        db.migrate(ecom_users::NAME, ecom_users::MIGRATIONS)
            .await
            .context("Failed to migrate the users database")?;
        match command {
            KeysCommand::List => {
                let keys = ecom_users::keys::list(&db).await?;
                if keys.is_empty() {
                    return Ok(vec![
                        "no keys yet: the users service makes one when it first starts (or run `ecom users keys rotate`)"
                            .to_owned(),
                    ]);
                }
                Ok(keys
                    .iter()
                    .map(|k| {
                        let role = if k.signing { "signing" } else { "verifying only" };
                        format!("{}  {}  {role}", k.kid, k.created_at)
                    })
                    .collect())
            }
            KeysCommand::Rotate => Ok(vec![ecom_users::keys::add_key(&db).await?]),
            KeysCommand::Retire { kid } => {
                ecom_users::keys::retire(&db, &kid).await?;
                Ok(vec![format!("retired {kid}")])
            }
        }
    }
    .await;
    db.close().await;
    done
}

/// Creates a user in the users database of `target` (migrating it first)
/// and returns its id.
pub async fn add(
    target: &StorageTarget,
    email: &str,
    password: &str,
    groups: &[String],
) -> anyhow::Result<String> {
    let email = Email::try_from(email.to_owned()).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let password =
        NewPassword::try_from(password.to_owned()).map_err(|e| anyhow::anyhow!("--password: {e}"))?;
    let groups = groups
        .iter()
        .map(|g| g.parse::<Group>().map_err(|e| anyhow::anyhow!("--group: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let db = Db::open(target, ecom_users::NAME).await?;
    let created = async {
        db.migrate(ecom_platform::outbox::SCOPE, ecom_platform::outbox::MIGRATIONS)
            .await?;
        db.migrate(ecom_users::NAME, ecom_users::MIGRATIONS)
            .await
            .context("Failed to migrate the users database")?;
        match accounts::create(&db, &Outbox::new(), &Gate::new(1, 1), &email, &password, &groups).await {
            Ok(id) => Ok(id),
            Err(CreateError::EmailTaken) => anyhow::bail!("a user with email {email} already exists"),
            Err(CreateError::Busy) => anyhow::bail!("the password could not be hashed now: try again"),
            Err(CreateError::Internal(e)) => Err(e),
        }
    }
    .await;
    db.close().await;
    created
}

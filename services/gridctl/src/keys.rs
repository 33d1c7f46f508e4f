//! `gridctl master-key new` and `gridctl keys rewrap`: the master key that
//! wraps residents' data keys, and its rotation.
//!
//! Rotation: put a new line (`gridctl master-key new ID`) first in the key
//! file, keeping the old line after it; restart the services (new data keys
//! are wrapped under the new key); run `gridctl keys rewrap` until it reports
//! no key left under an old master key; then delete the old line and destroy
//! every copy of it. Wrapped keys left behind in backups or replicas' logs
//! are unreadable from then on.

use anyhow::Context as _;
use gridcase_envelope::sealing::MasterKeys;
use gridcase_resources::{CommonArgs, KeyArgs};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The master key file (residents' contact details are sealed under
    /// keys it wraps).
    #[command(name = "master-key", subcommand)]
    MasterKey(MasterKey),
    /// The key store of per-case data keys (straight to NATS, as an operator).
    #[command(subcommand)]
    Keys(Keys),
}

#[derive(Debug, clap::Subcommand)]
pub enum MasterKey {
    /// Print a new key file line, `ID <64 hex digits>`, with a fresh random
    /// key. Put it first in the file to make it current.
    New {
        /// The key's name in the file, e.g. the date it was made: 1-64
        /// letters, digits or ._-
        id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum Keys {
    /// Wrap every data key that is not under the file's first (current)
    /// master key anew under it. Safe to run again, and while the services run.
    Rewrap {
        #[command(flatten)]
        common: Box<CommonArgs>,
        #[command(flatten)]
        keys: KeyArgs,
    },
}

pub async fn run(command: Command, json_output: bool) -> anyhow::Result<()> {
    match command {
        Command::MasterKey(MasterKey::New { id }) => {
            let line = MasterKeys::generate_line(&id)?;
            MasterKeys::parse(&line).with_context(|| format!("{id:?} is not a usable key id"))?;
            println!("{line}");
            Ok(())
        }
        Command::Keys(Keys::Rewrap { common, keys }) => {
            let (_client, log) = common.open_log("gridctl").await?;
            let store = keys.open(&log, true).await?;
            let current = keys.master_keys()?.map(|m| m.current_id().to_owned()).unwrap_or_default();
            let counts = store.rewrap().await?;
            if json_output {
                println!(
                    "{}",
                    serde_json::json!({
                        "current_master_key": current,
                        "rewrapped": counts.rewrapped,
                        "already_current": counts.current,
                        "changed_meanwhile": counts.skipped,
                    })
                );
            } else {
                println!(
                    "{} key(s) rewrapped under master key {current}, {} already under it, {} changed meanwhile (run again)",
                    counts.rewrapped, counts.current, counts.skipped
                );
            }
            Ok(())
        }
    }
}

//! `gridctl nats-key`: NKey pairs for the NATS users of deploy/nats/permissions.conf.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use anyhow::Context as _;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a NATS user key pair: the seed goes into FILE (mode 0600, never
    /// overwritten), the public key (U…) is printed for the server's
    /// configuration (GRIDCASE_NKEY_INTAKE and its siblings).
    #[command(name = "nats-key")]
    NatsKey {
        #[command(subcommand)]
        action: Action,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Create a new key pair.
    New { seed_file: PathBuf },
    /// Print the public key of an existing seed file.
    Public { seed_file: PathBuf },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    let Command::NatsKey { action } = command;
    let pair = match action {
        Action::New { seed_file } => {
            let pair = nkeys::KeyPair::new_user();
            let mut file =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&seed_file).with_context(
                    || format!("creating {} (an existing seed is never overwritten)", seed_file.display()),
                )?;
            writeln!(file, "{}", pair.seed().context("the new key's seed")?)?;
            pair
        }
        Action::Public { seed_file } => {
            let seed =
                std::fs::read_to_string(&seed_file).with_context(|| format!("reading {}", seed_file.display()))?;
            nkeys::KeyPair::from_seed(seed.trim())
                .with_context(|| format!("{} is not an NKey seed", seed_file.display()))?
        }
    };
    println!("{}", pair.public_key());
    Ok(())
}

//! `gridctl api-key`: API keys of partner systems (the Open311 gateway's
//! callers). The key is printed once, for the partner; the services keep
//! only its SHA-256, in the file `--auth-api-keys-file` names.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use gridcase_auth::apikey;
use ring::rand::{SecureRandom as _, SystemRandom};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make and revoke partner systems' API keys.
    #[command(name = "api-key")]
    ApiKey {
        #[command(subcommand)]
        action: Action,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Make a key: print it (hand it to the partner; it is shown only now)
    /// and add its line to FILE (created mode 0600 if missing). To rotate,
    /// make a new key for the same subject, hand it over, then revoke the
    /// old one.
    New {
        /// The key file the services read (GRIDCASE_AUTH_API_KEYS_FILE).
        #[arg(long, env = "GRIDCASE_AUTH_API_KEYS_FILE")]
        file: PathBuf,
        /// The key's id: 1-32 lower-case letters, digits or -, e.g. fms-2026.
        #[arg(long)]
        id: String,
        /// The partner as the services see it, e.g. partner-fixmystreet.
        #[arg(long)]
        subject: String,
        /// The partner's organisation code.
        #[arg(long)]
        org: String,
        /// Where it may file: a 6-digit county or 9-digit township code.
        #[arg(long)]
        territory: String,
    },
    /// Remove a key's line from FILE: the services refuse the key within
    /// seconds.
    Revoke {
        #[arg(long, env = "GRIDCASE_AUTH_API_KEYS_FILE")]
        file: PathBuf,
        #[arg(long)]
        id: String,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    let Command::ApiKey { action } = command;
    match action {
        Action::New { file, id, subject, org, territory } => {
            let existing = std::fs::read_to_string(&file).unwrap_or_default();
            let mut secret = [0u8; 32];
            SystemRandom::new().fill(&mut secret).map_err(|_| anyhow::anyhow!("the system random source failed"))?;
            let key = apikey::compose(&id, &secret);
            let line = format!("{id} {} {subject} {org} {territory}\n", apikey::digest(&key));
            // The file as it would be: refused before writing if anything is wrong.
            apikey::ApiKeys::parse(&format!("{existing}{line}")).with_context(|| format!("{}", file.display()))?;
            let mut out = std::fs::OpenOptions::new();
            out.append(true).create(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut out, 0o600);
            let mut handle = out.open(&file).with_context(|| format!("opening {}", file.display()))?;
            if !existing.is_empty() && !existing.ends_with('\n') {
                writeln!(handle)?;
            }
            handle.write_all(line.as_bytes())?;
            println!("{key}");
            Ok(())
        }
        Action::Revoke { file, id } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let kept: Vec<&str> =
                text.lines().filter(|line| line.split_whitespace().next() != Some(id.as_str())).collect();
            if kept.len() == text.lines().count() {
                anyhow::bail!("{} holds no key {id:?}", file.display());
            }
            let staged = file.with_extension("revoking");
            std::fs::write(&staged, kept.join("\n") + "\n")?;
            std::fs::rename(&staged, &file).with_context(|| format!("replacing {}", file.display()))?;
            eprintln!("revoked {id}");
            Ok(())
        }
    }
}

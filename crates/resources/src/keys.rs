//! Residents' data keys: the master key file and the key bucket.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use gridcase_envelope::sealing::MasterKeys;
use gridcase_eventlog::{EventLog, KeyStore};

/// Where residents' data keys are and what wraps them.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Master key file: one `<id> <64 hex digits>` line per key, the first
    /// current (it wraps new data keys), the others only unwrapping keys from
    /// before a rotation. Residents' contact details are sealed under
    /// per-case data keys wrapped by it. Readable by the service's user only.
    /// `gridctl master-key new ID` prints a line.
    #[arg(long, env = "GRIDCASE_MASTER_KEY_FILE", value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,

    /// JetStream key-value bucket holding the per-case data keys (wrapped).
    #[arg(long, env = "GRIDCASE_KEY_BUCKET", default_value = gridcase_eventlog::keys::DEFAULT_BUCKET)]
    pub key_bucket: String,

    /// Most new data keys stored in one atomic batch (the keys of filings
    /// that arrive while the previous batch is stored go together); 1:
    /// every key alone.
    #[arg(long, env = "GRIDCASE_KEY_BATCH_MAX", default_value_t = gridcase_eventlog::keys::DEFAULT_BATCH_MAX,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub key_batch_max: u16,
}

impl KeyArgs {
    /// The master keys of `--master-key-file`, if one is set.
    pub fn master_keys(&self) -> anyhow::Result<Option<Arc<MasterKeys>>> {
        let Some(path) = &self.master_key_file else { return Ok(None) };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the master key file {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(file = %path.display(), mode = format!("{:o}", mode & 0o777),
                    "the master key file is readable by other users: chmod 600 it");
            }
        }
        let keys = MasterKeys::parse(&text).with_context(|| format!("master key file {}", path.display()))?;
        tracing::info!(current = keys.current_id(), keys = keys.ids().count(), "master keys loaded");
        Ok(Some(Arc::new(keys)))
    }

    /// Open the key store on the log's JetStream. `need_master`: the service
    /// seals or opens personal data and must not start without the key file.
    pub async fn open(&self, log: &EventLog, need_master: bool) -> anyhow::Result<KeyStore> {
        // A service that only erases keys does not read the file at all.
        let master = if need_master { self.master_keys()? } else { None };
        anyhow::ensure!(
            master.is_some() || !need_master,
            "--master-key-file (GRIDCASE_MASTER_KEY_FILE) is required: residents' contact details are sealed \
             under keys it wraps; `gridctl master-key new ID > FILE` makes one"
        );
        KeyStore::open_batching(
            log.context(),
            &self.key_bucket,
            log.settings().replicas,
            master,
            usize::from(self.key_batch_max),
        )
        .await
        .context("opening the key store")
    }
}

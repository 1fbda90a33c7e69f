//! A Python interpreter that can run docs/examples/sign_event.py, set up on demand.
//!
//! If the interpreter named by `PYTHON` (default `python3`) can already import `cryptography`
//! and `rfc8785`, it is used as it is. Otherwise a virtual environment is created once under the
//! cargo target dir (`<target>/python-signing-venv`, so `CARGO_TARGET_DIR` is respected) and the
//! pinned versions of docs/examples/requirements.txt are installed into it from PyPI. The venv is
//! built in a private directory (one per process; threads take turns) and renamed into place, so
//! tests running at the same time never see a half-installed one.

use std::path::{Path, PathBuf};
use std::process::Command;

const IMPORT_CHECK: &str = "import cryptography, rfc8785";

/// The interpreter the signing tests run; panics with what to do if none can be set up.
pub fn signing_python() -> PathBuf {
    let base = PathBuf::from(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
    if can_import(&base) {
        return base;
    }
    let venv = target_dir().join("python-signing-venv");
    ensure_venv(&base, &venv)
}

/// Creates (if needed) the venv at `venv` from the interpreter `base` and returns its python.
pub fn ensure_venv(base: &Path, venv: &Path) -> PathBuf {
    // Tests of one process run on several threads and share its staging directory: one creates
    // the venv while the others wait, then find it ready.
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = CREATING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let python = venv.join("bin").join("python");
    if can_import(&python) {
        return python;
    }
    let requirements =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/requirements.txt");
    let staging = venv.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    eprintln!(
        "{} cannot import cryptography and rfc8785: creating {} with the versions of {}",
        base.display(),
        venv.display(),
        requirements.display()
    );
    run(Command::new(base).args(["-m", "venv"]).arg(&staging), "create a virtual environment");
    run(
        Command::new(staging.join("bin").join("python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
        "install the pinned signing packages from PyPI",
    );
    // Another test may have finished first; then its venv is used and ours is dropped.
    if std::fs::rename(&staging, venv).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        can_import(&python),
        "{} still cannot import cryptography and rfc8785; delete {} and rerun",
        python.display(),
        venv.display()
    );
    python
}

fn can_import(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", IMPORT_CHECK])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn run(command: &mut Command, what: &str) {
    let o = command.output().unwrap_or_else(|e| {
        panic!(
            "cannot {what}: {e}; the signing test needs python3 (3.8 or later) with venv and pip"
        )
    });
    assert!(
        o.status.success(),
        "cannot {what}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The cargo target dir this test binary was built into (`<target>/<profile>/tradeloop`).
fn target_dir() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_tradeloop"));
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("the binary is under <target>/<profile>")
}

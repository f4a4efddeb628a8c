//! System packages that some runtime checks need and a fresh machine may lack: Mesa's
//! Vulkan driver and loader for the wgpu smoke run (`mesa-vulkan-drivers libvulkan1`), a
//! TrueType font for `gpt plot` (`fonts-dejavu-core`), and Open MPI with the headers the
//! `mpi` feature's bindings are generated from (`openmpi-bin libopenmpi-dev libclang-dev`)
//! for the data-parallel tests; qemu's user-mode emulator (`qemu-user`) to run the binary
//! on a CPU without AVX-512; and the real clients `crates/cli/tests/serve_clients.rs`
//! drives `gpt serve` with: Debian's headless browser (`chromium chromium-driver`) and a
//! Python with the `openai` client and Selenium (`BURNGPT_CLIENTS_PYTHON`, a venv made
//! from `crates/cli/tests/clients/requirements.txt`). `.ci/run` installs them all.
//!
//! Without them a check that needs one is skipped with one line naming what to install;
//! when they are required (`--require-system-packages`, or `CI=true` in the environment)
//! their absence is an error instead. The tests learn that they are required from
//! [`REQUIRE_ENV`], which `cargo xtask ci` sets for them then.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

/// Set to `1` on the tests' environment when the system packages are required: a test
/// that needs one (tests/serve_clients.rs) fails without it instead of skipping.
pub const REQUIRE_ENV: &str = "BURNGPT_REQUIRE_SYSTEM_PACKAGES";

/// The clients' Python, the variable tests/serve_clients.rs reads.
const CLIENTS_PYTHON_ENV: &str = "BURNGPT_CLIENTS_PYTHON";

/// Whether the environment alone requires the system packages: `CI=true` (or `CI=1`), as
/// CI services set it.
pub fn required_by_env() -> bool {
    matches!(
        std::env::var("CI")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("true" | "1" | "yes")
    )
}

/// Whether a Vulkan driver (an ICD manifest) and the Vulkan loader are installed. Outside
/// Linux wgpu uses Metal or DX12, so this is assumed true there.
pub fn vulkan(require: bool) -> Result<bool> {
    if !cfg!(target_os = "linux") {
        return Ok(true);
    }
    let icd_dirs = [
        "/usr/share/vulkan/icd.d",
        "/etc/vulkan/icd.d",
        "/usr/local/share/vulkan/icd.d",
    ];
    let has_icd = std::env::var_os("VK_ICD_FILENAMES")
        .or_else(|| std::env::var_os("VK_DRIVER_FILES"))
        .is_some_and(|files| std::env::split_paths(&files).any(|p| p.exists()))
        || icd_dirs.iter().any(|dir| {
            std::fs::read_dir(dir).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
        });
    let has_loader = shared_library_exists("libvulkan.so.1");
    present(
        has_icd && has_loader,
        require,
        "the wgpu runtime smoke run needs Vulkan (a driver and the loader)",
        "mesa-vulkan-drivers libvulkan1",
    )
}

/// Whether `gpt plot` will find a font for its labels.
pub fn font(require: bool) -> Result<bool> {
    present(
        crate::fonts::find().is_some(),
        require,
        "`gpt plot` needs a TrueType font (or BURNGPT_FONT=file.ttf)",
        "fonts-dejavu-core",
    )
}

/// Whether `program` is a file in one of `PATH`'s directories.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Whether qemu's user-mode emulator is here, to run the x86-64 binary on an emulated CPU
/// without AVX-512 (`qemu-user`). Only x86-64 Linux builds have that check.
pub fn qemu(require: bool) -> Result<Option<&'static str>> {
    const QEMU: &str = "qemu-x86_64";
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        return Ok(None);
    }
    let found = present(
        on_path(QEMU),
        require,
        "the check that one binary runs on a CPU without AVX-512 needs qemu's user-mode emulator",
        "qemu-user",
    )?;
    Ok(found.then_some(QEMU))
}

/// Whether Open MPI (its launcher and the compiler wrapper the bindings' build asks for
/// flags) and libclang (which generates the bindings) are installed.
pub fn mpi(require: bool) -> Result<bool> {
    let libclang = [
        "libclang.so",
        "libclang-14.so",
        "libclang-15.so",
        "libclang-16.so",
    ]
    .iter()
    .any(|name| shared_library_exists(name));
    present(
        on_path("mpirun") && on_path("mpicc") && libclang,
        require,
        "the data-parallel tests need Open MPI (mpirun, mpicc) and libclang",
        "openmpi-bin libopenmpi-dev libclang-dev",
    )
}

/// Whether the serve tests' clients are here: Chromium and its driver where the tests
/// look (`BURNGPT_CHROMIUM`, `BURNGPT_CHROMEDRIVER`, else Debian's /usr/bin paths), and
/// `BURNGPT_CLIENTS_PYTHON`, a Python that imports `openai` and `selenium`.
pub fn clients(require: bool) -> Result<bool> {
    let path = |var: &str, default: &str| {
        std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
    };
    let browser = path("BURNGPT_CHROMIUM", "/usr/bin/chromium").is_file()
        && path("BURNGPT_CHROMEDRIVER", "/usr/bin/chromedriver").is_file();
    let browser = present(
        browser,
        require,
        "the serve page test needs headless Chromium and its driver",
        "chromium chromium-driver",
    )?;
    let python = std::env::var_os(CLIENTS_PYTHON_ENV).is_some_and(|python| {
        std::process::Command::new(python)
            .args(["-c", "import openai, selenium"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let python = present_or(
        python,
        require,
        "the serve client tests need a Python with the openai client and Selenium",
        &format!(
            "setting {CLIENTS_PYTHON_ENV} to the python of a venv with `pip install -r \
             crates/cli/tests/clients/requirements.txt`"
        ),
    )?;
    Ok(browser && python)
}

fn present(found: bool, require: bool, what: &str, packages: &str) -> Result<bool> {
    present_or(
        found,
        require,
        what,
        &format!("`apt-get install {packages}`"),
    )
}

/// `found`, else an error (`require`) or one line saying what is skipped; `remedy` says
/// what provides it.
fn present_or(found: bool, require: bool, what: &str, remedy: &str) -> Result<bool> {
    match (found, require) {
        (true, _) => Ok(true),
        (false, true) => bail!(
            "{what}, and it is missing: {remedy} (required under CI=true or \
             --require-system-packages)"
        ),
        (false, false) => {
            eprintln!("xtask: skipped: {what}, not installed here; {remedy} runs it");
            Ok(false)
        }
    }
}

/// Whether the dynamic loader can find `name`: in `ldconfig`'s cache, else in the usual
/// library directories.
fn shared_library_exists(name: &str) -> bool {
    let in_cache = ["ldconfig", "/sbin/ldconfig"].iter().any(|ldconfig| {
        std::process::Command::new(ldconfig)
            .arg("-p")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(name))
    });
    in_cache
        || [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/lib/x86_64-linux-gnu",
            "/lib/aarch64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
            "/usr/local/lib",
        ]
        .iter()
        .any(|dir| Path::new(dir).join(name).exists())
}

#[cfg(test)]
mod tests {
    /// `.ci/run` provides what [`super::clients`] asks for: the browser with the other
    /// packages, the venv from the pinned requirements, and the variable pointing at it.
    #[test]
    fn ci_provides_the_serve_clients() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let run = std::fs::read_to_string(root.join(".ci/run")).unwrap();
        for needed in [
            "chromium chromium-driver",
            "crates/cli/tests/clients/requirements.txt",
            "export BURNGPT_CLIENTS_PYTHON=",
        ] {
            assert!(run.contains(needed), ".ci/run lacks {needed:?}");
        }
        let pins = std::fs::read_to_string(root.join("crates/cli/tests/clients/requirements.txt"))
            .unwrap();
        for package in ["openai==", "selenium=="] {
            assert!(pins.contains(package), "requirements.txt pins no {package}");
        }
    }
}

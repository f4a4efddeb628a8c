//! System packages that some runtime checks need and a fresh machine may lack: Mesa's
//! Vulkan driver and loader for the wgpu smoke run (`mesa-vulkan-drivers libvulkan1`), a
//! TrueType font for `gpt plot` (`fonts-dejavu-core`), and Open MPI with the headers the
//! `mpi` feature's bindings are generated from (`openmpi-bin libopenmpi-dev libclang-dev`)
//! for the data-parallel tests. `.ci/run` installs them.
//!
//! Without them a check that needs one is skipped with one line naming what to install;
//! when they are required (`--require-system-packages`, or `CI=true` in the environment)
//! their absence is an error instead.

use anyhow::{Result, bail};
use std::path::Path;

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

/// Whether Open MPI (its launcher and the compiler wrapper the bindings' build asks for
/// flags) and libclang (which generates the bindings) are installed.
pub fn mpi(require: bool) -> Result<bool> {
    let on_path = |program: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
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

fn present(found: bool, require: bool, what: &str, packages: &str) -> Result<bool> {
    match (found, require) {
        (true, _) => Ok(true),
        (false, true) => bail!(
            "{what}, and it is missing: `apt-get install {packages}` (required under CI=true \
             or --require-system-packages)"
        ),
        (false, false) => {
            eprintln!(
                "xtask: skipped: {what}, not installed here; `apt-get install {packages}` runs it"
            );
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

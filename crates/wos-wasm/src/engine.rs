//! The one engine configuration, loading modules (`.wasm` or `.cwasm`), and the `compile` command.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use wasmtime::error::Context as _;
use wasmtime::{Config, Engine, ExternType, Module, OptLevel, Result, bail};

/// The engine of both `compile` and `run`.
///
/// A `.cwasm` records the settings that shape generated code (epoch checks, memory layout, CPU
/// features, wasmtime version) and `Module::deserialize_file` refuses one made with any other: so this
/// function is the only place an engine is configured.
pub fn engine() -> Result<Engine> {
    let mut config = Config::new();
    // `--cpu-seconds` works by epoch interruption: compiled code checks the epoch at function entries
    // and loop headers. It changes the generated code, so it is on even when a run sets no CPU limit.
    config.epoch_interruption(true);
    // Defaults, spelled out because they are part of the contract with cached `.cwasm` files.
    config.cranelift_opt_level(OptLevel::Speed);
    // A trap message without the wasm frames is useless to the job's owner; 20 frames (the default)
    // locate a trap and keep a stack-overflow trap from printing thousands of recursive frames.
    config.wasm_backtrace_max_frames(NonZeroUsize::new(20));
    // Compile functions in parallel on a cache miss. The thread pool starts lazily, on the first
    // compile, so running a `.cwasm` never starts it. It does not affect the compiled code.
    config.parallel_compilation(true);
    Engine::new(&config).context("cannot set up the WebAssembly engine on this host")
}

/// What a module file holds, told by its first bytes rather than its name.
#[derive(Debug, PartialEq, Eq)]
enum Format {
    /// A core WebAssembly module in binary format: compile it.
    CoreWasm,
    /// A native artifact of `Module::serialize` (an ELF file), made by `wos-wasm compile`.
    Compiled,
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Binary format version of core modules; components use another (0x0d 0x00 0x01 0x00).
const CORE_VERSION: &[u8; 4] = &[1, 0, 0, 0];
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

fn sniff(path: &Path, header: &[u8]) -> Result<Format> {
    let shown = path.display();
    if header.starts_with(ELF_MAGIC) {
        return Ok(Format::Compiled);
    }
    if !header.starts_with(WASM_MAGIC) {
        bail!(
            "{shown} is not a WebAssembly module: it does not start with the \\0asm magic (the text \
             format .wat is not accepted; give the binary .wasm, e.g. from wat2wasm)"
        );
    }
    if header.get(4..8) != Some(CORE_VERSION) {
        bail!(
            "{shown} is a WebAssembly component or an unknown binary version, not a core module: wos \
             runs WASI preview 1 command modules (build for wasm32-wasip1, formerly wasm32-wasi)"
        );
    }
    Ok(Format::CoreWasm)
}

/// Loads MODULE for `run`: a `.cwasm` from `compile` is mapped as is, a `.wasm` is compiled here.
pub fn load(engine: &Engine, path: &Path) -> Result<Module> {
    let mut header = Vec::with_capacity(8);
    File::open(path)
        .and_then(|f| f.take(8).read_to_end(&mut header))
        .with_context(|| format!("cannot read the module {}", path.display()))?;
    let module = match sniff(path, &header)? {
        // SAFETY: `deserialize_file` maps the file and runs its native code as is. The node only
        // passes files written by its own `wos-wasm compile` (atomically, never changed afterwards, and
        // read-only inside the sandbox), so the artifact is trusted and does not change while mapped.
        // Even a forged artifact would only run inside the job's sandbox, as a native job does.
        // wasmtime still checks the artifact's version and engine settings and refuses a mismatch.
        Format::Compiled => unsafe { Module::deserialize_file(engine, path) }.with_context(|| {
            format!(
                "cannot load the compiled module {} (a .cwasm only loads in the wos-wasm build that \
                 made it: delete it and run `wos-wasm compile` again)",
                path.display()
            )
        })?,
        Format::CoreWasm => Module::from_file(engine, path)
            .with_context(|| format!("cannot compile {}", path.display()))?,
    };
    check_command(&module).with_context(|| path.display().to_string())?;
    Ok(module)
}

/// A WASI preview 1 command exports `_start: [] -> []` and its memory as `memory`.
pub fn check_command(module: &Module) -> Result<()> {
    match module.get_export("_start") {
        Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => {}
        Some(ExternType::Func(_)) => {
            bail!(
                "its _start export has the wrong type: a WASI command's _start takes and returns nothing"
            )
        }
        Some(_) => bail!("its _start export is not a function"),
        None => bail!(
            "this module is a WASI reactor/library, not a command: it exports no _start{}; build it as \
             a program with a main function (with clang: without -mexec-model=reactor)",
            if module.get_export("_initialize").is_some() {
                " (only _initialize)"
            } else {
                ""
            }
        ),
    }
    if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
        bail!("it exports no memory named \"memory\", which WASI needs to pass arguments and data");
    }
    Ok(())
}

/// `wos-wasm compile IN OUT`: compile, check it is a runnable WASI command, write OUT atomically.
pub fn compile_file(input: &Path, output: &Path) -> Result<()> {
    let bytes =
        fs::read(input).with_context(|| format!("cannot read the module {}", input.display()))?;
    if sniff(input, &bytes)? != Format::CoreWasm {
        bail!(
            "{} is already compiled (a .cwasm); `compile` takes the .wasm it was made from",
            input.display()
        );
    }
    let engine = engine()?;
    let module = Module::new(&engine, &bytes)
        .with_context(|| format!("cannot compile {}", input.display()))?;
    check_command(&module).with_context(|| input.display().to_string())?;
    // Resolve the imports now, so that a module needing more than WASI preview 1 fails here, once, with
    // a clear message, instead of on every run.
    crate::run::linker(&engine)?
        .instantiate_pre(&module)
        .with_context(|| {
            format!(
                "{} needs imports that wos does not provide (only wasi_snapshot_preview1)",
                input.display()
            )
        })?;
    let compiled = module
        .serialize()
        .context("cannot serialize the compiled module")?;
    write_atomically(output, &compiled)
}

/// Writes `bytes` to a temp file next to `path`, syncs it and renames it over `path`: readers (the
/// node's cache, a concurrent run) see either the old file or the complete new one, never a torn one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path_for(path);
    let written = File::create_new(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        // Best effort: the temp file may not even exist; the original error is what matters.
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// `DIR/.NAME.PID.tmp`: in the same directory (so the rename stays on one filesystem), hidden, and
/// unique per process so that two concurrent compiles of the same module do not collide.
fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_tells_formats_apart() {
        let p = Path::new("m");
        assert_eq!(sniff(p, b"\0asm\x01\0\0\0").unwrap(), Format::CoreWasm);
        assert_eq!(
            sniff(p, b"\x7fELF\x02\x01\x01\0").unwrap(),
            Format::Compiled
        );
        let component = sniff(p, b"\0asm\x0d\0\x01\0").unwrap_err().to_string();
        assert!(component.contains("component"), "{component}");
        let text = sniff(p, b"(module)").unwrap_err().to_string();
        assert!(text.contains("not a WebAssembly module"), "{text}");
        assert!(sniff(p, b"").is_err());
    }

    #[test]
    fn temp_path_is_a_hidden_sibling() {
        let tmp = temp_path_for(Path::new("/cache/ab12.cwasm"));
        assert_eq!(tmp.parent(), Some(Path::new("/cache")));
        assert!(
            tmp.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".ab12.cwasm.")
        );
    }
}

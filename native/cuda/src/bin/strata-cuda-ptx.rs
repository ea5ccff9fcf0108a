//! Compiles every CUDA kernel variant with NVRTC for the given architectures, without a
//! GPU, and writes the PTX: `strata-cuda-ptx OUT_DIR [sm_80,sm_90]`. Any compile error is
//! printed with NVRTC's log and the exit status is 1. `scripts/check_cuda_kernels.sh` then
//! assembles each file with ptxas for register and spill counts.

use std::process::ExitCode;

use strata_cuda::kernels;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next() else {
        eprintln!("usage: strata-cuda-ptx OUT_DIR [sm_80,sm_90]");
        return ExitCode::from(2);
    };
    let archs: Vec<String> = args.next().unwrap_or_else(|| "sm_80,sm_90".into()).split(',').map(str::to_string).collect();
    match kernels::nvrtc_version() {
        Ok((a, b)) => eprintln!("NVRTC {a}.{b}"),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    // Always compile: a cached PTX would hide a compile error.
    std::env::set_var("STRATA_CUDA_CACHE", "off");
    let mut failed = 0;
    let mut written = 0;
    for arch in &archs {
        let dir = std::path::Path::new(&out).join(arch);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("{}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        for v in kernels::all_variants() {
            let name = format!("{}{}.ptx", v.file.trim_end_matches(".cu"), v.defines.iter().map(|d| format!("-{}", d.replace('=', ""))).collect::<String>());
            match kernels::compile(&v, arch, "") {
                Ok(ptx) => {
                    for k in v.kernels() {
                        if !ptx.contains(&format!(".entry {k}(")) {
                            eprintln!("{arch} {}: PTX has no entry {k}", v.label());
                            failed += 1;
                        }
                    }
                    if let Err(e) = std::fs::write(dir.join(&name), ptx) {
                        eprintln!("{name}: {e}");
                        failed += 1;
                    }
                    written += 1;
                }
                Err(e) => {
                    eprintln!("{e}");
                    failed += 1;
                }
            }
        }
    }
    eprintln!("{written} PTX files for {}, {failed} failures", archs.join(", "));
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

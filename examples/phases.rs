//! Profiling aid: time the planning phases in-process, `N` times each.
use std::time::Instant;
fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let n: u32 = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let what = std::env::var("WHAT").unwrap_or_default();
    let machine = elfmap::HostFacts::detect();
    let target = elfmap::plan::Target::resolve(&args[0], &args[1..]).unwrap();
    let mut cfg = elfmap::plan::Config::no_aslr(elfmap::plan::Stage::Loaded);
    let t = Instant::now();
    for i in 0..n {
        let ti = Instant::now();
        match what.as_str() {
            "unique" => {
                let g = elfmap::plan::dependencies(&target, &cfg, &machine)
                    .unwrap()
                    .unwrap();
                let objs: Vec<_> = g
                    .objects
                    .iter()
                    .map(|o| o.image.clone().zip(o.dynamic.clone()))
                    .collect();
                let rtld = g
                    .objects
                    .iter()
                    .position(|o| o.path.to_string_lossy().contains("ld-linux"))
                    .unwrap_or(usize::MAX);
                let reps: u32 = std::env::var("REPS")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(1);
                let t = Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(elfmap::ldso::glibc::unique::unique_tables_of(
                        &objs, rtld, true,
                    ));
                }
                eprintln!("unique_tables_of {:?}", t.elapsed() / reps);
            }
            "detect" => {
                std::hint::black_box(elfmap::HostFacts::detect());
            }
            "deps" => {
                std::hint::black_box(elfmap::plan::dependencies(&target, &cfg, &machine).unwrap());
            }
            "exec" => {
                cfg.stage = elfmap::plan::Stage::Exec;
                std::hint::black_box(elfmap::plan::plan(&target, &cfg, &machine).unwrap());
            }
            "render" => {
                let p = elfmap::plan::plan(&target, &cfg, &machine).unwrap();
                for _ in 0..3 {
                    let t = Instant::now();
                    std::hint::black_box(elfmap::render::maps::render(&p.mm));
                    eprintln!("render {:?}", t.elapsed());
                }
                let t = Instant::now();
                for _ in 0..1000 {
                    std::hint::black_box(elfmap::render::maps::render(&p.mm));
                }
                eprintln!("render steady {:?}", t.elapsed() / 1000);
            }
            _ => {
                std::hint::black_box(elfmap::plan::plan(&target, &cfg, &machine).unwrap());
            }
        }
        if i < 3 {
            eprintln!("iteration {i}: {:?}", ti.elapsed());
        }
    }
    eprintln!("{what}: {:?} per call", t.elapsed() / n);
}

//! A stable-toolchain driver for the fuzz targets, where cargo-fuzz (libFuzzer, nightly)
//! cannot be used: a plain random-mutation loop with no coverage feedback (so it finds far
//! less than libFuzzer per execution), seeded from the corpus directory, run in this
//! process. A panic aborts with the input saved to `crash-<target>-<n>`.
//!
//! `drive TARGET CORPUS_DIR EXECUTIONS [SEED]`

use std::io::Write;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn mutate(rng: &mut StdRng, b: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..rng.random_range(1..=4) {
        let len = b.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] = rng.random();
            }
            2 if len >= 8 => {
                // An interesting word.
                let i = rng.random_range(0..len - 7);
                let v: u64 = [0, 1, u64::MAX, 0x8000_0000_0000, 0xffff_ffff, 0x1000][rng.random_range(0..6)];
                let w = [1usize, 2, 4, 8][rng.random_range(0..4)];
                b[i..i + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
            3 if len > 0 => b.truncate(rng.random_range(0..len)),
            4 => {
                let n = rng.random_range(1..64);
                let at = rng.random_range(0..=len);
                let fill: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                b.splice(at..at, fill);
            }
            5 if len > 1 => {
                let (i, j) = (rng.random_range(0..len), rng.random_range(0..len));
                let n = rng.random_range(1..=(len - i.max(j)).min(64));
                let chunk = b[i..i + n].to_vec();
                b[j..j + n].copy_from_slice(&chunk);
            }
            6 if !corpus.is_empty() => {
                // Splice in part of another input.
                let o = &corpus[rng.random_range(0..corpus.len())];
                if !o.is_empty() && len > 0 {
                    let i = rng.random_range(0..o.len());
                    let n = rng.random_range(1..=(o.len() - i).min(256));
                    let at = rng.random_range(0..len);
                    let end = (at + n).min(len);
                    b[at..end].copy_from_slice(&o[i..i + (end - at)]);
                }
            }
            _ => {}
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: drive TARGET CORPUS_DIR EXECUTIONS [SEED]");
        std::process::exit(2);
    }
    let f: fn(&[u8]) = match args[1].as_str() {
        "plan_exec" => elfmap_fuzz::plan_exec,
        "plan_library" => elfmap_fuzz::plan_library,
        "ld_cache" => elfmap_fuzz::ld_cache,
        "maps" => elfmap_fuzz::maps,
        "explain_maps" => elfmap_fuzz::explain_maps,
        t => {
            eprintln!("unknown target {t}");
            std::process::exit(2);
        }
    };
    let n: u64 = args[3].parse().expect("EXECUTIONS");
    let seed: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(&args[2])
        .map(|d| {
            d.filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                .filter(|b| b.len() <= 1 << 20)
                .collect()
        })
        .unwrap_or_default();
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let t0 = std::time::Instant::now();
    let current = std::sync::Mutex::new(Vec::new());
    let name = args[1].clone();
    let default_hook = std::panic::take_hook();
    let saved = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let saved2 = saved.clone();
    std::panic::set_hook(Box::new(move |info| {
        let data = saved2.lock().map(|g| g.clone()).unwrap_or_default();
        let path = format!("crash-{name}-{}", std::process::id());
        let _ = std::fs::write(&path, &data);
        eprintln!("input saved to {path}");
        default_hook(info);
        std::process::abort();
    }));
    for i in 0..n {
        let mut b = corpus[rng.random_range(0..corpus.len())].clone();
        mutate(&mut rng, &mut b, &corpus);
        if let Ok(mut g) = saved.lock() {
            g.clone_from(&b);
        }
        f(&b);
        if i % 100_000 == 0 && i > 0 {
            let s = t0.elapsed().as_secs_f64();
            eprintln!("#{i} {:.0} exec/s", i as f64 / s);
            let _ = std::io::stderr().flush();
        }
        *current.lock().unwrap() = b;
    }
    eprintln!(
        "done: {n} executions in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let _ = Path::new(".");
}

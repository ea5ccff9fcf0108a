//! The loader cases (`strata_conformance::loader_cases`, shared with the browser
//! conformance page) run natively.

use strata_conformance::loader_cases::cases;

#[test]
fn every_loader_case_passes() {
    let all = cases();
    let failed: Vec<String> = all.iter().filter_map(|(name, case)| case().err().map(|e| format!("{name}: {e}"))).collect();
    println!("loader cases: {} passed, {} failed", all.len() - failed.len(), failed.len());
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

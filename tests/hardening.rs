//! Issue 6, data loss: situations an operator meets every day that must neither lose nor
//! double a record. Each test is named after the item it proves.

use std::collections::HashSet;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use switchyard::sandbox::{Fault, Sandbox, SandboxConfig};
use switchyard::store::Store;

use crate::runtime::{delivered_offer_ids, load, run_flow, workspace_copy};

/// Every offer of the marketplace's listing, in its order, through its own paged API.
async fn listing(sandbox: &Sandbox) -> Vec<Value> {
    let client = switchyard::connectors::http::client_builder()
        .build()
        .unwrap();
    let mut all = Vec::new();
    loop {
        let url = format!(
            "{}/api/offers?offset={}&max=100",
            sandbox.marketplace_url(),
            all.len()
        );
        let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        let offers = page["offers"].as_array().cloned().unwrap_or_default();
        if offers.is_empty() {
            return all;
        }
        all.extend(offers);
    }
}

/// Item 1: offers re-posted at random moments while a run pages through the listing move to
/// its end; every offset after them shifts. Over 20 randomised trials, no valid offer may be
/// skipped by the run that was reading when it happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_01_no_record_skipped_when_the_source_changes_while_paging() {
    const TRIALS: u64 = 20;
    let root = workspace_copy("paging", false);
    let mut skipped_total = 0;
    for trial in 0..TRIALS {
        let sandbox = Sandbox::start(SandboxConfig {
            offers: 500,
            seed: 1_000 + trial,
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        let early: Vec<Value> = listing(&sandbox).await.into_iter().take(200).collect();
        let workspace = load(&root, &sandbox);
        let state = root.join(format!("state-{trial}.db"));
        let store = Store::open(&state).unwrap();
        // Slow pages leave room for updates between two of them, as on a real API.
        sandbox.inject_marketplace_fault(Fault::latency(15));

        let run = tokio::spawn({
            let workspace = workspace.clone();
            let store = store.clone();
            async move { run_flow(&workspace, &store).await }
        });
        let mut rng = StdRng::seed_from_u64(trial);
        let mut updates = 0;
        while !run.is_finished() && updates < 60 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(1..30))).await;
            let mut batch = Vec::new();
            for _ in 0..rng.random_range(1..=3) {
                let mut offer = early[rng.random_range(0..early.len())].clone();
                // Without `updated_at` the marketplace stamps it now: the offer moves to
                // the end of the listing.
                offer.as_object_mut().map(|o| o.remove("updated_at"));
                batch.push(offer);
            }
            sandbox.push_offers(batch).unwrap();
            updates += 1;
        }
        run.await.unwrap();
        let delivered: HashSet<i64> = delivered_offer_ids(&sandbox).into_iter().collect();
        let skipped: Vec<i64> = sandbox
            .summary()
            .valid_offer_ids
            .into_iter()
            .filter(|id| !delivered.contains(id))
            .collect();
        if !skipped.is_empty() {
            eprintln!("trial {trial}: {updates} updates, skipped offers {skipped:?}");
        }
        skipped_total += skipped.len();
        sandbox.shutdown().await;
    }
    assert_eq!(
        skipped_total, 0,
        "valid offers skipped over {TRIALS} trials"
    );
}

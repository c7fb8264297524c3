use super::*;

const T0: u64 = 1_700_000_040_000; // a minute boundary (…040_000 / 60_000 is whole)

fn node(name: &str) -> NodeId {
    NodeId::new(name).expect("node id")
}

fn rpm(limit: u32, pool_percent: u8) -> TenantLimits {
    TenantLimits {
        requests_per_minute: Some(limit),
        rate_pool_percent: pool_percent,
        ..TenantLimits::default()
    }
}

fn books(n: usize) -> Vec<UsageBook> {
    (0..n)
        .map(|i| {
            let mut book = UsageBook::new(node(&format!("n{i}")));
            book.set_tracked(["acme"]);
            book
        })
        .collect()
}

/// Delivers every book's record to every other book.
fn gossip(books: &mut [UsageBook], now_ms: u64) {
    let records: Vec<(NodeId, UsageRecord)> = books
        .iter_mut()
        .map(|b| {
            let bytes = b.encode_local(now_ms).expect("encode");
            (
                b.local.clone(),
                UsageRecord::decode(&bytes).expect("decode"),
            )
        })
        .collect();
    for book in books.iter_mut() {
        for (origin, record) in &records {
            book.merge(origin, record.clone(), now_ms).expect("merge");
        }
    }
}

#[test]
fn one_node_admits_exactly_the_limit_and_says_when_to_retry() {
    assert_eq!(T0 % 60_000, 0);
    let mut book = books(1).remove(0);
    let limits = rpm(60, 20);
    let admitted = (0..100)
        .filter(|i| book.admit("acme", &limits, 1, T0 + 1_000 + i).is_ok())
        .count();
    assert_eq!(admitted, 60);
    let rejection = book.admit("acme", &limits, 1, T0 + 15_000).unwrap_err();
    assert_eq!(rejection.limit, LimitKind::RequestsPerMinute);
    assert_eq!(rejection.retry_after_ms, 45_000);
    // The next minute frees the window.
    assert!(book.admit("acme", &limits, 1, T0 + 60_000).is_ok());
    // Untracked tenants are never limited.
    assert!(book.admit("other", &limits, 1, T0).is_ok());
}

#[test]
fn without_any_gossip_the_cluster_stays_within_the_bound() {
    // The worst case: no node hears from any other during the minute.
    for (n, limit, pool) in [(6usize, 60u32, 20u8), (3, 60, 20), (9, 60, 0), (6, 7, 50)] {
        let mut books = books(n);
        let limits = rpm(limit, pool);
        let bound = books[0]
            .overshoot_bound("acme", &limits, n, T0)
            .expect("bound");
        let mut admitted = 0;
        for book in &mut books {
            for i in 0..200 {
                admitted += usize::from(book.admit("acme", &limits, n, T0 + i).is_ok());
            }
        }
        assert!(
            admitted as u64 <= u64::from(limit) + bound,
            "n={n} L={limit} p={pool}: {admitted} > {limit} + {bound}"
        );
        // The bound is tight here: every node took its reserve and the pool.
        assert_eq!(admitted as u64, u64::from(limit) + bound, "n={n}");
    }
}

#[test]
fn with_gossip_the_overshoot_is_small_and_bounded() {
    let n = 6;
    let limits = rpm(60, 20);
    let mut books = books(n);
    let bound = books[0].overshoot_bound("acme", &limits, n, T0).unwrap();
    assert_eq!(bound, 5 * 12);
    let mut admitted = 0u64;
    // 300 requests round-robin, a gossip round every 10 requests.
    for i in 0..300u64 {
        if i % 10 == 0 {
            gossip(&mut books, T0 + i);
        }
        let book = &mut books[(i % n as u64) as usize];
        admitted += u64::from(book.admit("acme", &limits, n, T0 + i).is_ok());
    }
    assert!(admitted <= 60 + bound, "{admitted}");
    assert!(
        admitted >= 60,
        "{admitted}: the limit itself must be reachable"
    );
    gossip(&mut books, T0 + 400);
    let used = books[0].usage("acme", &limits, T0 + 400);
    assert_eq!(used[0], (LimitKind::RequestsPerMinute, admitted, 60));
}

#[test]
fn a_tenant_on_one_node_gets_the_whole_limit_after_one_minute() {
    let n = 6;
    let limits = rpm(60, 20);
    let mut books = books(n);
    // Minute 0: cold start, equal reserves: one node gets q + pool.
    let first = (0..100)
        .filter(|i| books[0].admit("acme", &limits, n, T0 + i).is_ok())
        .count();
    assert_eq!(first, 8 + 12);
    gossip(&mut books, T0 + 59_000);
    // Minute 1: the previous minute's demand was all on node 0.
    let next = T0 + 60_000;
    let second = (0..100)
        .filter(|i| books[0].admit("acme", &limits, n, next + i).is_ok())
        .count();
    assert_eq!(second, 60);
    // Other nodes, having no reserve now, get nothing more while node 0's
    // count is known.
    gossip(&mut books, next + 200);
    assert!(books[3].admit("acme", &limits, n, next + 300).is_err());
}

#[test]
fn concurrency_is_held_per_node_and_across_nodes() {
    let limits = TenantLimits {
        max_concurrent_jobs: Some(2),
        ..TenantLimits::default()
    };
    let mut books = books(2);
    assert!(books[0].admit("acme", &limits, 2, T0).is_ok());
    assert!(books[0].admit("acme", &limits, 2, T0).is_ok());
    let rejection = books[0].admit("acme", &limits, 2, T0).unwrap_err();
    assert_eq!(rejection.limit, LimitKind::ConcurrentJobs);
    assert_eq!(rejection.retry_after_ms, CONCURRENCY_RETRY_AFTER_MS);
    gossip(&mut books, T0 + 10);
    assert!(books[1].admit("acme", &limits, 2, T0 + 20).is_err());
    books[0].release("acme");
    gossip(&mut books, T0 + 30);
    assert!(books[1].admit("acme", &limits, 2, T0 + 40).is_ok());
    // A peer that stops publishing no longer holds slots.
    books[1].release("acme");
    let later = T0 + IN_FLIGHT_MAX_AGE_MS + 1_000;
    books[1].expire(later);
    assert_eq!(books[1].usage("acme", &limits, later)[0].1, 0);
}

#[test]
fn spend_is_summed_across_nodes_per_day_and_month() {
    let usd = super::super::money::NANO_USD_PER_USD;
    let limits = TenantLimits {
        spend_per_day_nano_usd: Some(10 * usd),
        spend_per_month_nano_usd: Some(15 * usd),
        ..TenantLimits::default()
    };
    let mut books = books(2);
    books[0].record_spend("acme", 6 * usd, T0);
    books[1].record_spend("acme", 3 * usd, T0);
    gossip(&mut books, T0 + 1);
    assert!(books[1].admit("acme", &limits, 2, T0 + 2).is_ok());
    books[1].record_spend("acme", 2 * usd, T0 + 3);
    gossip(&mut books, T0 + 4);
    let rejection = books[0].admit("acme", &limits, 2, T0 + 5).unwrap_err();
    assert_eq!(rejection.limit, LimitKind::SpendPerDay);
    let day_end = super::super::window::day_end_ms(super::super::window::day_index(T0 + 5));
    assert_eq!(rejection.retry_after_ms, day_end - (T0 + 5));
    // The next day, the monthly limit still holds the rest back.
    let tomorrow = day_end + 1;
    if super::super::window::month_index(tomorrow) == super::super::window::month_index(T0) {
        assert!(books[0].admit("acme", &limits, 2, tomorrow).is_ok());
        books[0].record_spend("acme", 5 * usd, tomorrow);
        let rejection = books[0]
            .admit("acme", &limits, 2, tomorrow + 1)
            .unwrap_err();
        assert_eq!(rejection.limit, LimitKind::SpendPerMonth);
    }
}

#[test]
fn records_survive_a_round_trip_and_garbage_is_refused() {
    let mut book = books(1).remove(0);
    let limits = rpm(5, 0);
    book.admit("acme", &limits, 1, T0).unwrap();
    book.record_spend("acme", 42, T0);
    let bytes = book.encode_local(T0).unwrap();
    let record = UsageRecord::decode(&bytes).unwrap();
    assert_eq!(record.tenants.len(), 1);
    assert_eq!(record.tenants[0].1.day.spent_nano_usd, 42);
    // Own echo after a "restart" restores the counts but not the gauge.
    let mut restarted = books(1).remove(0);
    restarted.merge(&node("n0"), record, T0 + 1).unwrap();
    assert_eq!(restarted.usage("acme", &limits, T0 + 1)[0].1, 1);
    assert!(!restarted.has_in_flight());
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for len in 0..300 {
        let mut garbage = vec![USAGE_FORMAT_VERSION];
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            garbage.push(seed as u8);
        }
        let _ = UsageRecord::decode(&garbage);
    }
    assert!(UsageRecord::decode(&[]).is_err());
    assert!(UsageRecord::decode(&[9, 0]).is_err());
    assert!(UsageRecord::decode(&vec![1; MAX_USAGE_RECORD_BYTES + 1]).is_err());
}

#[test]
fn the_largest_record_fits_the_mesh_limit() {
    let mut book = UsageBook::new(node("n0"));
    let names: Vec<String> = (0..MAX_TENANTS)
        .map(|i| format!("{i:0>MAX_TENANT_NAME_LEN$}"))
        .collect();
    book.set_tracked(names.iter().map(String::as_str));
    let limits = rpm(u32::MAX, 0);
    for name in &names {
        for _ in 0..3 {
            book.admit(name, &limits, 1, T0 + 59_999).unwrap();
        }
        book.record_spend(name, u64::MAX / 2, T0 + 59_999);
    }
    let bytes = book.encode_local(T0 + 59_999).expect("fits");
    assert!(bytes.len() <= MAX_USAGE_RECORD_BYTES, "{}", bytes.len());
}

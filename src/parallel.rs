//! Bounded fan-out: run one closure per item (usually per host) on scoped
//! threads, at most `limit` at once, and hand the results back in item order.
//!
//! Every SSH session owns its own current-thread runtime and blocks on it,
//! so plain threads under [`std::thread::scope`] fit: nothing async is
//! shared between hosts, and the closure may borrow from the caller.
//!
//! Invariant: the i-th result belongs to the i-th item, whatever order the
//! threads finish in (`--json` output lists hosts in the target's order).
//! No more than `limit` items run at the same time, and at least one does.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Run `f` on every item, at most `limit` at a time; one result per item,
/// in item order.
///
/// # Errors
/// None of its own: whatever `f` returns for an item is that item's result.
/// A panic in `f` is re-raised once every started item has finished.
pub fn map<I, T, F>(items: Vec<I>, limit: usize, f: F) -> Vec<T>
where
    I: Send,
    T: Send,
    F: Fn(I) -> T + Sync,
{
    // Nothing cancels, so every item ran and has its result.
    run(items, limit, f, |_| false).into_iter().flatten().collect()
}

/// Like [`map`], but the first `Err` cancels the rest: items that have not
/// started by then never start, and their place in the result is `None`.
/// Items already running finish, and keep their results.
///
/// # Errors
/// None of its own: an item's `Err` is returned in its place.
pub fn try_map<I, T, E, F>(items: Vec<I>, limit: usize, f: F) -> Vec<Option<Result<T, E>>>
where
    I: Send,
    T: Send,
    E: Send,
    F: Fn(I) -> Result<T, E> + Sync,
{
    run(items, limit, f, Result::is_err)
}

/// The one worker pool behind [`map`] and [`try_map`]: `limit` threads take
/// items from a shared queue until it is empty or a result `cancels`.
fn run<I, T, F, C>(items: Vec<I>, limit: usize, f: F, cancels: C) -> Vec<Option<T>>
where
    I: Send,
    T: Send,
    F: Fn(I) -> T + Sync,
    C: Fn(&T) -> bool + Sync,
{
    let n = items.len();
    let queue = Mutex::new(items.into_iter().enumerate());
    let done: Mutex<Vec<(usize, T)>> = Mutex::new(Vec::with_capacity(n));
    let cancelled = AtomicBool::new(false);
    let workers = limit.clamp(1, n.max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !cancelled.load(Ordering::SeqCst) {
                    let next = queue.lock().ok().and_then(|mut q| q.next());
                    let Some((i, item)) = next else { break };
                    let result = f(item);
                    if cancels(&result) {
                        cancelled.store(true, Ordering::SeqCst);
                    }
                    if let Ok(mut d) = done.lock() {
                        d.push((i, result));
                    }
                }
            });
        }
    });
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for (i, result) in done.into_inner().unwrap_or_default() {
        out[i] = Some(result);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::{map, try_map};

    #[test]
    fn results_come_back_in_item_order_whatever_finishes_first() {
        // Earlier items sleep longer, so they finish last.
        let items: Vec<u64> = (0..8).collect();
        let out = map(items, 4, |i| {
            std::thread::sleep(Duration::from_millis((8 - i) * 5));
            i * 10
        });
        assert_eq!(out, vec![0, 10, 20, 30, 40, 50, 60, 70]);
    }

    #[test]
    fn no_more_than_limit_items_run_at_once() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        map((0..12).collect::<Vec<_>>(), 3, |_| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(10));
            running.fetch_sub(1, Ordering::SeqCst);
        });
        assert!(most.load(Ordering::SeqCst) <= 3);
    }

    #[test]
    fn a_limit_of_zero_still_runs_everything_and_no_items_is_fine() {
        assert_eq!(map(vec![1, 2], 0, |i| i + 1), vec![2, 3]);
        assert!(map(Vec::<u8>::new(), 4, |i| i).is_empty());
    }

    #[test]
    fn items_can_be_mutable_borrows() {
        let mut hosts = vec![String::from("a"), String::from("b")];
        map(hosts.iter_mut().collect(), 2, |h| h.push('!'));
        assert_eq!(hosts, ["a!", "b!"]);
    }

    #[test]
    fn the_first_failure_cancels_items_not_yet_started() {
        // One at a time: item 1 fails, so 2 and 3 never start.
        let started = AtomicUsize::new(0);
        let out = try_map(vec![0, 1, 2, 3], 1, |i| {
            started.fetch_add(1, Ordering::SeqCst);
            if i == 1 { Err(format!("item {i}")) } else { Ok(i) }
        });
        assert_eq!(out, vec![Some(Ok(0)), Some(Err("item 1".to_string())), None, None]);
        assert_eq!(started.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn without_failures_try_map_runs_everything() {
        let out = try_map(vec![1, 2, 3], 2, Ok::<_, ()>);
        assert_eq!(out, vec![Some(Ok(1)), Some(Ok(2)), Some(Ok(3))]);
    }
}

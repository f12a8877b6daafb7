//! Lists and buffers a request fills, kept by the worker between requests so that a request
//! allocates none of them. An allocation and its free cost the module a few hundred
//! instructions each, more for text too large for the allocator's small bins (bench/README.md,
//! "Allocations per request").
//!
//! - The request's header list, the decision list, and one text buffer for the outcome JSON
//!   (filter state) and then the exposure header's value are used only within the request
//!   callback. A worker runs one VM on one thread and one callback at a time, so each has one
//!   spare.
//! - The exposure event and the list of exposed variations wait in the stream for the
//!   response, so they come from small pools: one per stream in flight, up to [`MAX_SPARES`]
//!   kept.
//!
//! A spare is taken, filled and given back empty; one that is not given back (a stream reset
//! before its response, a reentrant callback) only costs a later request an allocation. The
//! lists that borrow from the request's header buffer and from the policy are stored empty,
//! under `'static`, and handed out again under the caller's lifetime by [`emptied`], which
//! keeps the allocation without any unsafe code.

use std::borrow::Cow;
use std::cell::Cell;

use switchyard_policy::Decision;

type HeaderList<'m> = Vec<(Cow<'m, str>, Cow<'m, str>)>;

/// The most event buffers, and lists of exposed variations, kept for later streams: more
/// than a worker usually has in flight, and a few hundred KB at most with large policies.
pub const MAX_SPARES: usize = 64;

thread_local! {
    static EVENTS: Cell<Vec<String>> = const { Cell::new(Vec::new()) };
    static EXPOSED: Cell<Vec<Vec<(usize, usize)>>> = const { Cell::new(Vec::new()) };
    static HEADERS: Cell<HeaderList<'static>> = const { Cell::new(Vec::new()) };
    static DECISIONS: Cell<Vec<Decision<'static>>> = const { Cell::new(Vec::new()) };
    static TEXT: Cell<String> = const { Cell::new(String::new()) };
}

/// An empty list with the spare header list's allocation.
pub fn headers<'m>() -> HeaderList<'m> {
    emptied(HEADERS.take())
}

/// Keeps a request's header list (emptied) for the next request.
pub fn keep_headers(list: HeaderList<'_>) {
    HEADERS.set(emptied(list));
}

/// An empty list with the spare decision list's allocation.
pub fn decisions<'p>() -> Vec<Decision<'p>> {
    emptied(DECISIONS.take())
}

/// Keeps a request's decision list (emptied) for the next request.
pub fn keep_decisions(list: Vec<Decision<'_>>) {
    DECISIONS.set(emptied(list));
}

/// The spare text buffer (its content is stale: each renderer clears it first).
pub fn text_buffer() -> String {
    TEXT.take()
}

/// Keeps the text buffer for the next request.
pub fn keep_text_buffer(buffer: String) {
    TEXT.set(buffer);
}

/// A buffer for a stream's exposure event (its content is stale: the renderer clears it).
pub fn event_buffer() -> String {
    take_spare(&EVENTS).unwrap_or_default()
}

/// Keeps a written event's buffer for a later stream.
pub fn keep_event_buffer(buffer: String) {
    keep_spare(&EVENTS, buffer);
}

/// An empty list for a stream's exposed (flag, variation) pairs.
pub fn exposed_list() -> Vec<(usize, usize)> {
    take_spare(&EXPOSED).unwrap_or_default()
}

/// Keeps a stream's list of exposed variations (emptied) for a later stream.
pub fn keep_exposed_list(mut list: Vec<(usize, usize)>) {
    list.clear();
    keep_spare(&EXPOSED, list);
}

fn take_spare<T>(pool: &'static std::thread::LocalKey<Cell<Vec<T>>>) -> Option<T> {
    pool.with(|cell| {
        let mut spares = cell.take();
        let spare = spares.pop();
        cell.set(spares);
        spare
    })
}

fn keep_spare<T>(pool: &'static std::thread::LocalKey<Cell<Vec<T>>>, spare: T) {
    pool.with(|cell| {
        let mut spares = cell.take();
        if spares.len() < MAX_SPARES {
            spares.push(spare);
        }
        cell.set(spares);
    });
}

/// `list` without its items, as a list of `U`. Collecting a vector's own iterator into a
/// vector of an item of the same size and alignment reuses its allocation (the standard
/// library's in-place collection); `T` and `U` here differ only in lifetimes.
fn emptied<T, U>(mut list: Vec<T>) -> Vec<U> {
    list.clear();
    list.into_iter().filter_map(|_| None).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emptied_list_keeps_its_allocation_under_another_lifetime() {
        let text = String::from("x-tenant-id");
        let mut list: HeaderList<'_> = Vec::with_capacity(8);
        list.push((Cow::Borrowed(text.as_str()), Cow::Borrowed("acme")));
        let pointer = list.as_ptr() as usize;
        let kept: HeaderList<'static> = emptied(list);
        assert!(kept.is_empty());
        assert_eq!(kept.capacity(), 8);
        assert_eq!(kept.as_ptr() as usize, pointer);
    }

    #[test]
    fn a_kept_list_comes_back_empty_with_its_capacity() {
        let mut list = headers();
        list.reserve(16);
        list.push((Cow::Borrowed("x-plan"), Cow::Owned("pro".to_string())));
        let capacity = list.capacity();
        keep_headers(list);
        let again = headers();
        assert!(again.is_empty());
        assert_eq!(again.capacity(), capacity);
    }

    #[test]
    fn event_buffers_are_pooled_up_to_a_bound() {
        let buffers: Vec<String> = (0..MAX_SPARES + 3)
            .map(|i| {
                let mut buffer = event_buffer();
                buffer.clear();
                buffer.push_str(&"x".repeat(100 + i));
                buffer
            })
            .collect();
        for buffer in buffers {
            keep_event_buffer(buffer);
        }
        let taken: Vec<String> = (0..MAX_SPARES + 3).map(|_| event_buffer()).collect();
        let reused = taken.iter().filter(|b| b.capacity() >= 100).count();
        assert_eq!(reused, MAX_SPARES);
    }

    #[test]
    fn an_exposed_list_comes_back_empty() {
        let mut list = exposed_list();
        list.extend([(0, 1), (2, 0)]);
        keep_exposed_list(list);
        let again = exposed_list();
        assert!(again.is_empty());
        assert!(again.capacity() >= 2);
    }

    #[test]
    fn the_text_buffer_is_kept() {
        let mut buffer = text_buffer();
        buffer.push_str("flag;reason=SPLIT");
        let capacity = buffer.capacity();
        keep_text_buffer(buffer);
        assert_eq!(text_buffer().capacity(), capacity);
    }
}

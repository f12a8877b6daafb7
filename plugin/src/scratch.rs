//! Lists and buffers a request fills, kept by the worker between requests so that a request
//! allocates none of them: the request's header list, the decision list, and one text buffer
//! for the outcome JSON (filter state) and then the exposure header's value. An allocation and
//! its free cost the module a few hundred instructions each (more for the text, too large for
//! the allocator's small bins; see bench/README.md): with the lean settings, the three were a
//! sixteenth of what the module did per request.
//!
//! A worker runs one VM on one thread and one callback at a time, so each kind has one spare.
//! A spare is taken, filled and given back empty; a request that never gives it back (a
//! reentrant callback, say) only costs the next request an allocation. The lists borrow from
//! the request's header buffer and the policy; they are stored empty, under `'static`, and
//! handed out again under the caller's lifetime by [`emptied`], which keeps the allocation
//! without any unsafe code.

use std::borrow::Cow;
use std::cell::Cell;

use switchyard_policy::Decision;

type HeaderList<'m> = Vec<(Cow<'m, str>, Cow<'m, str>)>;

thread_local! {
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
    fn the_text_buffer_is_kept() {
        let mut buffer = text_buffer();
        buffer.push_str("flag;reason=SPLIT");
        let capacity = buffer.capacity();
        keep_text_buffer(buffer);
        assert_eq!(text_buffer().capacity(), capacity);
    }
}

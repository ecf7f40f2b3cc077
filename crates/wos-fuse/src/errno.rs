//! WebFS answers as errno values.
//!
//! The HTTP gateway classifies its refusals by status code; a 409 covers
//! several POSIX errors, told apart by the message (which names them the way
//! `wos-fsmeta` and the gateway word them).

use fuser::Errno;
use wos_api::ApiFailure;

/// The errno a program sees for a failed WebFS request.
pub(crate) fn errno(f: &ApiFailure) -> Errno {
    let msg = f.message.as_str();
    match f.status {
        Some(404) => Errno::ENOENT,
        Some(401 | 403) if msg.contains("root directory") => Errno::EPERM,
        Some(401 | 403) => Errno::EACCES,
        Some(409) => conflict(msg),
        // The mount sends only one conditional write, `If-None-Match: *`
        // when creating, whose refusal says "exists". Any other 412 is a
        // lost compare-and-swap on the version: the caller can re-read and
        // try again, which is what EAGAIN says (ESTALE would suggest the
        // file itself is gone).
        Some(412) if msg.contains("exists") => Errno::EEXIST,
        // An upload's object was renamed, removed or replaced elsewhere.
        Some(412) if msg.contains("no longer names") => Errno::ESTALE,
        Some(412) => Errno::EAGAIN,
        Some(400 | 422) => bad_request(msg),
        Some(413) => Errno::EFBIG,
        // A range outside the file: the version this handle opened is gone.
        Some(416) => Errno::ESTALE,
        // 5xx and no answer at all: the cell cannot be reached now, the
        // network file system's usual EIO.
        _ => Errno::EIO,
    }
}

fn conflict(msg: &str) -> Errno {
    // "is not a directory" contains "not a directory", not "is a directory".
    if msg.contains("not empty") {
        Errno::ENOTEMPTY
    } else if msg.contains("not a directory") {
        Errno::ENOTDIR
    } else if msg.contains("is a directory") {
        Errno::EISDIR
    } else if msg.contains("exists") {
        Errno::EEXIST
    } else {
        Errno::EIO
    }
}

fn bad_request(msg: &str) -> Errno {
    if msg.contains("bytes long") {
        Errno::ENAMETOOLONG
    } else if msg.contains("symbolic links") {
        Errno::ELOOP
    } else {
        Errno::EINVAL
    }
}

/// The errno of a local I/O error (the spool files).
pub(crate) fn io_errno(e: &std::io::Error) -> Errno {
    e.raw_os_error().map(Errno::from_i32).unwrap_or(Errno::EIO)
}

#[cfg(test)]
mod tests {
    use wos_api::ErrorKind;

    use super::*;

    fn failure(status: u16, message: &str) -> ApiFailure {
        ApiFailure {
            kind: ErrorKind::Other,
            status: Some(status),
            message: message.into(),
        }
    }

    #[test]
    fn gateway_messages_map_to_posix_errors() {
        let cases = [
            (404, "/a: no such file or directory", Errno::ENOENT),
            (404, "/a does not exist (use --parents / -p)", Errno::ENOENT),
            (403, "user:bob may not write fs:/a", Errno::EACCES),
            (403, "the root directory cannot be removed", Errno::EPERM),
            (409, "/a: already exists", Errno::EEXIST),
            (409, "/a exists", Errno::EEXIST),
            (409, "/a: directory not empty", Errno::ENOTEMPTY),
            (409, "/a: not a directory", Errno::ENOTDIR),
            (409, "/a is not a directory", Errno::ENOTDIR),
            (409, "/a: is a directory", Errno::EISDIR),
            (409, "/a is a directory", Errno::EISDIR),
            (412, "/a exists (If-None-Match: *)", Errno::EEXIST),
            (412, "/a: someone else committed first", Errno::EAGAIN),
            (400, "name \"aaa\"… is 300 bytes long", Errno::ENAMETOOLONG),
            (400, "invalid name \"..\": reserved", Errno::EINVAL),
            (400, "/a: too many levels of symbolic links", Errno::ELOOP),
            (416, "range outside", Errno::ESTALE),
            (503, "no live node holds chunk", Errno::EIO),
        ];
        for (status, message, want) in cases {
            assert_eq!(errno(&failure(status, message)), want, "{status} {message}");
        }
    }

    #[test]
    fn no_answer_is_eio() {
        let f = ApiFailure {
            kind: ErrorKind::Unavailable,
            status: None,
            message: "could not connect".into(),
        };
        assert_eq!(errno(&f), Errno::EIO);
    }
}

//! Validation of names, paths and attribute values given by clients.

use crate::error::{FsError, prefix};
use crate::model::MODE_MASK;

/// Longest name of a directory entry, in bytes (NAME_MAX).
pub const MAX_NAME: usize = 255;
/// Longest path, and longest symlink target, in bytes (PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Longest owner principal id, in bytes.
const MAX_OWNER: usize = 255;

/// Checks one directory entry name: not empty, not `.` or `..`, no `/`, no
/// NUL, at most [`MAX_NAME`] bytes.
pub fn check_name(name: &str) -> Result<(), FsError> {
    let invalid = |reason: &str| {
        Err(FsError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return invalid("a name may not be empty");
    }
    if name.len() > MAX_NAME {
        return Err(FsError::NameTooLong {
            name: prefix(name, 32),
            len: name.len(),
        });
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not names");
    }
    if name.contains('/') {
        return invalid("a name may not contain '/'");
    }
    if name.contains('\0') {
        return invalid("a name may not contain a NUL byte");
    }
    Ok(())
}

/// Splits an absolute path into its names: `"/a//b/"` gives `["a", "b"]`,
/// `"/"` gives `[]`.
///
/// `.` and `..` components are refused rather than interpreted: paths are
/// what the reference monitor checks by prefix, and `/home/bob/../alice`
/// must not slip past a rule for `/home/bob`.
pub fn parse_path(path: &str) -> Result<Vec<&str>, FsError> {
    let invalid = |reason: &str| {
        Err(FsError::InvalidPath {
            path: path.to_string(),
            reason: reason.to_string(),
        })
    };
    if path.len() > MAX_PATH {
        return Err(FsError::PathTooLong {
            path: prefix(path, 64),
            len: path.len(),
        });
    }
    if !path.starts_with('/') {
        return invalid("a path must be absolute (start with '/')");
    }
    let mut names = Vec::new();
    for component in path.split('/').filter(|c| !c.is_empty()) {
        match component {
            ".." => return invalid("paths may not contain '..'"),
            "." => return invalid("paths may not contain '.'"),
            name => {
                check_name(name)?;
                names.push(name);
            }
        }
    }
    Ok(names)
}

/// `mode` must hold permission bits only; the file type is the inode's kind.
pub(crate) fn check_mode(path: &str, mode: u32) -> Result<(), FsError> {
    if mode & !MODE_MASK != 0 {
        return Err(FsError::Invalid {
            path: path.to_string(),
            reason: format!("mode {mode:#o} has bits outside the permission bits {MODE_MASK:#o}"),
        });
    }
    Ok(())
}

/// An owner is a principal id such as `user:alice`. Which principals exist
/// is the reference monitor's business; here only the shape is checked, so
/// that listings and messages stay printable.
pub(crate) fn check_owner(path: &str, owner: &str) -> Result<(), FsError> {
    let reason = if owner.is_empty() {
        "the owner may not be empty"
    } else if owner.len() > MAX_OWNER {
        "the owner is longer than 255 bytes"
    } else if owner.chars().any(char::is_control) {
        "the owner may not contain control characters"
    } else {
        return Ok(());
    };
    Err(FsError::Invalid {
        path: path.to_string(),
        reason: reason.to_string(),
    })
}

/// A symlink target is any non-empty string without NUL, at most
/// [`MAX_PATH`] bytes; it may be relative and may contain `..` (it is
/// interpreted only when followed, as POSIX does).
pub(crate) fn check_target(path: &str, target: &str) -> Result<(), FsError> {
    let reason = if target.is_empty() {
        "a symbolic link target may not be empty"
    } else if target.len() > MAX_PATH {
        "a symbolic link target may have at most 4096 bytes"
    } else if target.contains('\0') {
        "a symbolic link target may not contain a NUL byte"
    } else {
        return Ok(());
    };
    Err(FsError::Invalid {
        path: path.to_string(),
        reason: reason.to_string(),
    })
}

/// `parent` + `/` + `name`, without doubling the root's slash.
pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Errno;

    #[test]
    fn names() {
        let long = "x".repeat(MAX_NAME);
        let too_long = "x".repeat(MAX_NAME + 1);
        let table: &[(&str, Option<Errno>)] = &[
            ("a", None),
            ("file.txt", None),
            ("...", None),
            (".hidden", None),
            ("été", None),
            (&long, None),
            ("", Some(Errno::Inval)),
            (".", Some(Errno::Inval)),
            ("..", Some(Errno::Inval)),
            ("a/b", Some(Errno::Inval)),
            ("a\0b", Some(Errno::Inval)),
            (&too_long, Some(Errno::NameTooLong)),
        ];
        for (name, want) in table {
            let got = check_name(name).err().map(|e| e.errno());
            assert_eq!(got, *want, "check_name({name:?})");
        }
    }

    #[test]
    fn paths() {
        let deep = format!("/{}", ["d"; 2048].join("/")); // 4096 bytes
        let too_deep = format!("{deep}/");
        let table: &[(&str, Result<Vec<&str>, Errno>)] = &[
            ("/", Ok(vec![])),
            ("//", Ok(vec![])),
            ("/a", Ok(vec!["a"])),
            ("/a/b", Ok(vec!["a", "b"])),
            ("/a//b", Ok(vec!["a", "b"])),
            ("/a/b/", Ok(vec!["a", "b"])),
            ("///a///b///", Ok(vec!["a", "b"])),
            ("/a/...", Ok(vec!["a", "..."])),
            ("", Err(Errno::Inval)),
            ("a/b", Err(Errno::Inval)),
            ("/a/../b", Err(Errno::Inval)),
            ("/..", Err(Errno::Inval)),
            ("/a/./b", Err(Errno::Inval)),
            ("/.", Err(Errno::Inval)),
            ("/a\0", Err(Errno::Inval)),
            (&too_deep, Err(Errno::NameTooLong)),
        ];
        for (path, want) in table {
            let got = parse_path(path).map_err(|e| e.errno());
            assert_eq!(&got, want, "parse_path({path:?})");
        }
        assert_eq!(parse_path(&deep).unwrap().len(), 2048);
        let long_name = format!("/a/{}", "n".repeat(256));
        assert_eq!(
            parse_path(&long_name).unwrap_err().errno(),
            Errno::NameTooLong
        );
    }

    #[test]
    fn dotdot_message_says_so() {
        let err = parse_path("/home/bob/../alice").unwrap_err();
        assert!(
            err.to_string().contains("paths may not contain '..'"),
            "{err}"
        );
        assert!(err.to_string().contains("/home/bob/../alice"), "{err}");
    }

    #[test]
    fn too_long_errors_carry_a_prefix_only() {
        let err = check_name(&"é".repeat(200)).unwrap_err();
        let FsError::NameTooLong { name, len } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*len, 400);
        assert!(name.len() <= 32);
    }

    #[test]
    fn attribute_checks() {
        assert!(check_mode("/f", 0o7777).is_ok());
        assert!(check_mode("/f", 0o100644).is_err());
        assert!(check_owner("/f", "user:alice").is_ok());
        assert!(check_owner("/f", "").is_err());
        assert!(check_owner("/f", "user:\nroot").is_err());
        assert!(check_target("/l", "../x").is_ok());
        assert!(check_target("/l", "").is_err());
        assert!(check_target("/l", "a\0").is_err());
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }
}

//! The inode table: one node per path the kernel has been shown, kept for
//! the life of the mount.
//!
//! **Invariant: one path, one inode.** A node gets its children all at once,
//! the first time its listing is needed ([`Table::set_children`]), and never
//! again: a second load of the same directory (two threads racing) keeps
//! the first. So the node for a path is created exactly once, and its inode
//! number (its index in the table, plus one) never changes while the mount
//! lives, whatever the kernel forgets. Nothing is ever removed: the table
//! grows with what has been looked at, at most to the size of the view.

use std::sync::Arc;
use std::time::SystemTime;

use vst::{FileEntry, Name, SymlinkTarget, TreeId};

/// An inode number. The root is [`ROOT`]; node `i` of the table is `i + 1`.
pub(crate) type Ino = u64;

/// The root's inode number, as FUSE requires.
pub(crate) const ROOT: Ino = 1;

/// What a node is.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// A directory from the store; its listing is read on first use.
    Tree(TreeId),
    /// A regular file.
    File(FileEntry),
    /// A symbolic link.
    Symlink(SymlinkTarget),
    /// A directory the mount makes up (the root of the `--all` view,
    /// `branches/` and the prefixes of branch names): its children are set
    /// when the mount is built.
    Synthetic,
    /// `commits/`: every commit reachable from the view's branch heads,
    /// found by walking parents on first use.
    Commits,
}

impl Content {
    pub(crate) fn is_dir(&self) -> bool {
        matches!(self, Content::Tree(_) | Content::Synthetic | Content::Commits)
    }
}

/// One path of the view.
#[derive(Debug)]
pub(crate) struct Node {
    /// The directory holding it (the root is its own parent).
    pub(crate) parent: Ino,
    /// Its name in `parent`; `None` for the root.
    pub(crate) name: Option<Name>,
    pub(crate) content: Content,
    /// Every time of the node (modified, changed, accessed): the time of
    /// the commit it belongs to.
    pub(crate) time: SystemTime,
    /// The children of a directory, once loaded.
    pub(crate) listing: Option<Listing>,
}

/// A directory's children, sorted by name bytes (the order of a tree).
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub(crate) children: Arc<[Ino]>,
    /// How many children are directories (for `nlink`).
    pub(crate) subdirs: u32,
}

/// A child about to get an inode.
#[derive(Debug)]
pub(crate) struct NewChild {
    pub(crate) name: Name,
    pub(crate) content: Content,
    pub(crate) time: SystemTime,
}

/// Every node of the mount. See the module documentation.
#[derive(Debug)]
pub(crate) struct Table {
    nodes: Vec<Node>,
}

impl Table {
    /// A table holding only the root.
    pub(crate) fn new(root: Content, time: SystemTime) -> Self {
        Self { nodes: vec![Node { parent: ROOT, name: None, content: root, time, listing: None }] }
    }

    /// How many nodes there are.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The node `ino`, if it exists.
    pub(crate) fn get(&self, ino: Ino) -> Option<&Node> {
        let index = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.nodes.get(index)
    }

    /// Gives the directory `parent` its children, each a new inode, and
    /// returns its listing. If it already has one (another thread loaded it
    /// first), that one stays and is returned, and `children` is dropped.
    /// Returns `None` if `parent` does not exist.
    pub(crate) fn set_children(
        &mut self,
        parent: Ino,
        mut children: Vec<NewChild>,
    ) -> Option<Listing> {
        let index = usize::try_from(parent.checked_sub(1)?).ok()?;
        if let Some(listing) = &self.nodes.get(index)?.listing {
            return Some(listing.clone());
        }
        children.sort_by(|a, b| a.name.cmp(&b.name));
        children.dedup_by(|a, b| a.name == b.name);
        let first = self.nodes.len() as Ino + 1;
        let mut subdirs = 0u32;
        let inos: Arc<[Ino]> = (first..first + children.len() as Ino).collect();
        for child in children {
            subdirs = subdirs.saturating_add(u32::from(child.content.is_dir()));
            self.nodes.push(Node {
                parent,
                name: Some(child.name),
                content: child.content,
                time: child.time,
                listing: None,
            });
        }
        let listing = Listing { children: inos, subdirs };
        self.nodes[index].listing = Some(listing.clone());
        Some(listing)
    }

    /// The child `name` of `parent`, if `parent`'s listing is loaded and
    /// has it.
    pub(crate) fn child(&self, parent: Ino, name: &[u8]) -> Option<Ino> {
        let listing = self.get(parent)?.listing.as_ref()?;
        let found = listing.children.binary_search_by(|&c| {
            let child_name = self.get(c).and_then(|n| n.name.as_ref());
            child_name.map_or(&[][..], |n| n.as_bytes()).cmp(name)
        });
        found.ok().map(|i| listing.children[i])
    }

    /// The path of `ino` from the root of the mount, for messages.
    pub(crate) fn path(&self, ino: Ino) -> String {
        let mut names = Vec::new();
        let mut at = ino;
        // Bounded: each step goes to a node created earlier (a parent is
        // always older than its children), so this ends at the root.
        while let Some(node) = self.get(at) {
            match &node.name {
                Some(name) => names.push(name.to_string()),
                None => break,
            }
            if node.parent >= at {
                break;
            }
            at = node.parent;
        }
        names.reverse();
        format!("/{}", names.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn child(name: &str, content: Content) -> NewChild {
        NewChild { name: Name::try_from(name).unwrap(), content, time: UNIX_EPOCH }
    }

    #[test]
    fn a_directory_is_listed_once_and_keeps_its_inodes() {
        let mut t = Table::new(Content::Synthetic, UNIX_EPOCH);
        let first = t
            .set_children(ROOT, vec![child("b", Content::Synthetic), child("a", Content::Commits)])
            .unwrap();
        assert_eq!(&*first.children, &[2, 3]);
        assert_eq!(first.subdirs, 2);
        assert_eq!(t.child(ROOT, b"a"), Some(2), "children are sorted by name");
        assert_eq!(t.child(ROOT, b"b"), Some(3));
        assert_eq!(t.child(ROOT, b"c"), None);
        // A second load (a racing thread) changes nothing.
        let again = t.set_children(ROOT, vec![child("z", Content::Synthetic)]).unwrap();
        assert_eq!(&*again.children, &[2, 3]);
        assert_eq!(t.len(), 3);
        let nested = t.set_children(3, vec![child("x", Content::Synthetic)]).unwrap();
        assert_eq!(&*nested.children, &[4]);
        assert_eq!(t.path(4), "/b/x");
        assert_eq!(t.path(ROOT), "/");
        assert!(t.get(0).is_none() && t.get(99).is_none());
        assert!(t.set_children(99, Vec::new()).is_none());
    }
}

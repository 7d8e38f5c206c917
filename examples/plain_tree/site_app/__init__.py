"""A package inside a plain source tree (importable because the tree is on the path)."""

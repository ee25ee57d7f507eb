//! The adstream topology file.

//! voltd-actors integration tests, one module per topic (notes/layout.md:
//! the other test files move in here as they are regrouped).

mod keystore;

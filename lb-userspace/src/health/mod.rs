//! Health checks with HAProxy's semantics: the state machine (pure) and the checkers (I/O).

//! Giving up in bounded time, and stopping when asked: stalled peers end a transfer within a few
//! minutes with a message that names what stalled, and Ctrl-C / SIGTERM is honoured in every wait.

// Cooperative interruption (Ctrl-C). The CLI installs the SIGINT handler; long loops (the
// tuning driver between candidates, the shape-list scheduler between tasks) poll
// stop_requested() and finish cleanly: the summary is written and the log stays resumable.
// A second Ctrl-C exits at once (the log is still valid: records are flushed one by one).
#pragma once

namespace ktune {

// Installs the handler: the first SIGINT sets the flag, the second exits with code 130.
void install_interrupt_handler();
bool stop_requested();
void request_stop();  // for tests and --time-budget style limits
void clear_stop();

}  // namespace ktune

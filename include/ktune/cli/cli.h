// The ktune command line (CLI11). run() parses argv, runs the command and returns the exit
// code: 0 on success, 2 for user errors (bad flags, kernel files, targets, logs), 1 for
// internal errors. See docs/cli.md.
#pragma once

namespace ktune::cli {

int run(int argc, char** argv);

}  // namespace ktune::cli

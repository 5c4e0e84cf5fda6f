#include "ktune/cli/cli.h"

int main(int argc, char** argv) { return ktune::cli::run(argc, argv); }

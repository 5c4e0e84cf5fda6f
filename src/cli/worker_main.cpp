// ktune-worker: the process that measures candidates for an isolated tune (search/isolated.h).
// The tuner starts it; it is not meant to be run by hand.
#include "ktune/search/isolated.h"

int main(int argc, char** argv) { return ktune::search::worker_main(argc, argv); }

// errgroup/errgroup.hpp: everything. See README.md for the tour.
#pragma once

#include "errgroup/context.hpp"
#include "errgroup/error.hpp"
#include "errgroup/first_success.hpp"
#include "errgroup/group.hpp"
#include "errgroup/parallel_map.hpp"
#include "errgroup/quorum.hpp"
#include "errgroup/results.hpp"
#include "errgroup/scheduler.hpp"
#include "errgroup/trace.hpp"
#include "errgroup/weighted.hpp"

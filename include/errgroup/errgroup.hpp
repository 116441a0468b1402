// errgroup/errgroup.hpp: everything. See README.md for the tour.
#pragma once

#include "errgroup/context.hpp"
#include "errgroup/error.hpp"
#include "errgroup/group.hpp"
#include "errgroup/scheduler.hpp"
#include "errgroup/weighted.hpp"

#include "lib/sieve/sieve.h"

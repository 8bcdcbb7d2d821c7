/* Calls every generated unit and prints a checksum of their results. */
#include <stdio.h>
#include "common.h"
#include "units/units.h"
#include "units/list.h"

int main(void) {
  long s = 0;
  for (unsigned i = 0; i < sizeof units / sizeof units[0]; ++i) s = mix(s, units[i]((long)i));
  printf("units=%u checksum=%lx\n", (unsigned)(sizeof units / sizeof units[0]), (unsigned long)s);
  return 0;
}

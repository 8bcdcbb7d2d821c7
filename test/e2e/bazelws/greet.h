#ifndef BAZELWS_GREET_H_
#define BAZELWS_GREET_H_

#include <string>

// The greeting for `name`.
std::string Greet(const std::string& name);

#endif  // BAZELWS_GREET_H_

/// \file
/// The typed exception family of attn. Every message is complete in what(): it names the layer type,
/// the parameter or tensor, what was expected and what came.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace attn {

/// Base of every exception attn throws; catch this to catch them all.
class Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A configuration (parameters, JSON) is invalid. `type()` is the layer type string, `parameter()` the
/// offending parameter (empty for whole-config problems).
class ConfigError : public Error {
public:
  ConfigError(const std::string& message, std::string type = {}, std::string parameter = {})
      : Error(message), type_(std::move(type)), parameter_(std::move(parameter)) {}
  [[nodiscard]] const std::string& type() const noexcept { return type_; }
  [[nodiscard]] const std::string& parameter() const noexcept { return parameter_; }

private:
  std::string type_;
  std::string parameter_;
};

/// A tensor given to a layer has the wrong rank or extent.
class ShapeError : public Error {
public:
  using Error::Error;
};

/// A weight tensor is missing, unexpected, of the wrong shape or of an unsupported dtype.
class WeightsError : public Error {
public:
  using Error::Error;
};

/// A file could not be read or written, or its bytes are malformed.
class IOError : public Error {
public:
  using Error::Error;
};

}  // namespace attn

package ocicache.e2e.lib;

import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;

/** Builds greetings from a bundled resource. */
public final class Greeter {
  private final String template;

  public Greeter() {
    Properties p = new Properties();
    try (InputStream in = Greeter.class.getResourceAsStream("greeting.properties")) {
      if (in != null) {
        p.load(in);
      }
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
    template = p.getProperty("template", "hello, %s");
  }

  public String greet(String name) {
    return String.format(template, name);
  }
}

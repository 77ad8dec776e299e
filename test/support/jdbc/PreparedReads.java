// Runs one query through pgjdbc (the PostgreSQL JDBC driver) several times as a prepared statement, the way Java
// applications do, and prints each result as tab-separated lines, or "ERROR <SQLSTATE> <message>".
//
// java -cp postgresql.jar PreparedReads.java <jdbc url> <user> <password> <times> <sql with one bigint parameter>
//
// From its prepareThreshold-th execution on (5 by default; the URL may set another), pgjdbc prepares the statement on
// the server and asks for binary results for the types it reads in binary (integers, numerics, dates and times…).
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;

public class PreparedReads {
  public static void main(String[] args) throws Exception {
    String url = args[0], user = args[1], password = args[2], sql = args[4];
    int times = Integer.parseInt(args[3]);
    try (Connection connection = DriverManager.getConnection(url, user, password);
         PreparedStatement statement = connection.prepareStatement(sql)) {
      for (int run = 1; run <= times; run++) {
        statement.setLong(1, run);
        try (ResultSet rows = statement.executeQuery()) {
          int columns = rows.getMetaData().getColumnCount();
          while (rows.next()) {
            StringBuilder line = new StringBuilder().append(run);
            for (int column = 1; column <= columns; column++) line.append('\t').append(rows.getString(column));
            System.out.println(line);
          }
        } catch (SQLException error) {
          System.out.println(run + "\tERROR " + error.getSQLState() + " " + error.getMessage().split("\n")[0]);
        }
      }
    }
  }
}
